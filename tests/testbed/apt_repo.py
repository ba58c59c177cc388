"""The stand-in apt repository for the repair roles' tests (test_repair.py, Molecule).

A flat apt repository of empty packages with NVIDIA's names and versions (from
tests/fixtures/apt-repo/standins.json, built with equivs-build), plus
python3-apt for Ansible's apt module, whose .debs come from this machine's
Debian mirror once and are cached. The test hosts are offline: the repository
is copied to them and used as a `file:` apt source.

    python -m testbed.apt_repo DIRECTORY   # from tests/; skips a built DIRECTORY
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import FIXTURES_DIR

STANDINS = FIXTURES_DIR / "apt-repo" / "standins.json"
DEBIAN_CACHE = Path("/var/cache/gpuprov/apt-debs")
# Where the tests put the repository on a host, and the apt source that reads it there.
REMOTE_REPO = "/srv/gpuprov-test-repo"
SOURCE = f"deb [trusted=yes] file:{REMOTE_REPO} ./"
TOOLS = ("equivs-build", "dpkg-scanpackages")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def spec() -> dict:
    return json.loads(STANDINS.read_text())


def build_standin(name: str, version: str, depends: list[str], out: Path) -> None:
    control = out / f"{name}_{version}.ctl"
    lines = [
        "Section: misc",
        "Priority: optional",
        "Standards-Version: 4.6.2",
        f"Package: {name}",
        f"Version: {version}",
        "Maintainer: gpuprov tests <tests@gpuprov.invalid>",
        "Architecture: amd64",
    ]
    if depends:
        lines.append("Depends: " + ", ".join(d.format(version=version) for d in depends))
    lines += [
        f"Description: gpuprov test stand-in for {name}",
        " Empty package carrying NVIDIA's name and version for gpuprov's repair tests.",
    ]
    control.write_text("\n".join(lines) + "\n")
    subprocess.run(
        ["equivs-build", control.name], cwd=out, check=True, capture_output=True, timeout=120
    )
    control.unlink()
    for leftover in (".buildinfo", ".changes"):
        (out / f"{name}_{version}_amd64{leftover}").unlink(missing_ok=True)


def build_repo(directory: Path) -> Path:
    """Build the repository in `directory` (made if absent); its `Packages` index comes last."""
    missing = missing_tools()
    if missing:
        raise RuntimeError(
            f"the stand-in apt repository needs {', '.join(missing)} "
            "(apt-get install equivs dpkg-dev)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    packages = spec()
    for package in packages["packages"]:
        for version in package["versions"]:
            build_standin(package["name"], version, package.get("depends", []), directory)
    # python3-apt for Ansible's apt module: the hosts are minimal Debian 12 and offline.
    DEBIAN_CACHE.mkdir(parents=True, exist_ok=True)
    absent = [n for n in packages["from_debian"] if not list(DEBIAN_CACHE.glob(f"{n}_*.deb"))]
    if absent:
        subprocess.run(
            ["apt-get", "download", *absent],
            cwd=DEBIAN_CACHE,
            check=True,
            capture_output=True,
            timeout=300,
        )
    for name in packages["from_debian"]:
        for deb in DEBIAN_CACHE.glob(f"{name}_*.deb"):
            shutil.copy(deb, directory)
    index = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        cwd=directory,
        check=True,
        capture_output=True,
        text=True,
    )
    (directory / "Packages").write_text(index.stdout)
    return directory


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m testbed.apt_repo DIRECTORY", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    if (directory / "Packages").is_file():
        print(f"{directory}: already built")
        return 0
    build_repo(directory)
    print(f"{directory}: built")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
