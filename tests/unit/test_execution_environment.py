"""execution-environment.yml gives ansible-builder a build context with gpuprov in it.

`ansible-builder create` writes the context (Containerfile, requirements) and
needs no container engine; building the image needs a base image (docs/awx.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """The build context of the repository's EE definition, with the collection built."""
    root = tmp_path_factory.mktemp("ee")
    shutil.copy(REPO / "execution-environment.yml", root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    for args in (
        ["ansible-galaxy", "collection", "build", "--output-path", "build", str(REPO)],
        [
            "ansible-builder",
            "create",
            "-f",
            "execution-environment.yml",
            "-c",
            "context",
            "--output-filename",
            "Containerfile",
        ],
    ):
        done = subprocess.run(
            args, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "No matches for" not in done.stdout + done.stderr
    return root / "context"


def test_the_collections_are_in_the_context(context):
    galaxy = yaml.safe_load((context / "_build/requirements.yml").read_text())
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    tarball = f"collections/gpuprov-gpu-{version}.tar.gz"
    assert {"name": "community.docker", "version": ">=4.0.0"} in galaxy["collections"]
    assert {"name": tarball, "type": "file"} in galaxy["collections"]
    # The tarball the requirement names is the one built from this repository.
    assert (context / "_build" / tarball).is_file()
    assert "RUN ANSIBLE_GALAXY_DISABLE_GPG_VERIFY=1 ansible-galaxy collection install" in (
        (context / "Containerfile").read_text()
    )


def test_the_python_requirements_are_in_the_context(context):
    python = (context / "_build/requirements.txt").read_text().split()
    assert python == ["jinja2>=3.1,<4", "pyyaml>=6.0,<7"]
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.20 ansible-runner>=2.4,<3"' in (
        containerfile
    )
    assert 'ARG PYCMD="/usr/bin/python3.12"' in containerfile
    assert "COPY _build/requirements.txt requirements.txt" in containerfile
    assert "openssh-clients" in (context / "_build/bindep.txt").read_text()
