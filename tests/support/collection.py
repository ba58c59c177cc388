"""The collection gpuprov.gpu built from the clone and installed on its own, as an
Execution Environment holds it: no clone, no ansible.cfg of the clone, and the
gpuprov Python package out of reach."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# Imported by Python at start-up from PYTHONPATH: gpuprov and gpuprov.* fail to import.
NO_GPUPROV = '''\
import sys


class NoGpuprov:
    """Refuses the gpuprov package, as in an Execution Environment without it."""

    def find_spec(self, name, path=None, target=None):
        if name == "gpuprov" or name.startswith("gpuprov."):
            raise ImportError(f"{name} is not installed here (tests/support/collection.py)")
        return None


sys.meta_path.insert(0, NoGpuprov())
'''


def tarball_name() -> str:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    return f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"


def env_outside_the_clone(bin_dir: Path | None = None) -> dict[str, str]:
    """The environment without any ANSIBLE_* setting (no ansible.cfg of the clone)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_FORCE_COLOR"] = "0"
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def _galaxy(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["ansible-galaxy", "collection", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def build(output: Path, env: dict[str, str]) -> Path:
    """`ansible-galaxy collection build` of the clone into ``output``; the tarball."""
    _galaxy(["build", "--output-path", str(output), str(REPO)], output, env)
    tarball = output / tarball_name()
    assert tarball.is_file(), sorted(p.name for p in output.iterdir())
    return tarball


def install(tarball: Path, collections: Path, env: dict[str, str]) -> Path:
    """Install the tarball offline into the collections folder ``collections``; the
    folder of the installed gpuprov.gpu."""
    _galaxy(["install", "--offline", "-p", str(collections), str(tarball)], collections.parent, env)
    installed = collections / "ansible_collections" / "gpuprov" / "gpu"
    assert (installed / "MANIFEST.json").is_file()
    return installed


def without_gpuprov(folder: Path) -> Path:
    """A folder for PYTHONPATH whose sitecustomize makes gpuprov unimportable."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(NO_GPUPROV)
    return folder
