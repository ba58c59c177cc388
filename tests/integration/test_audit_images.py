"""`gpuprov audit` on real images built on the test bed's engine: real layouts, real labels,
the inspector run inside each image by the Docker CLI, exactly as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.layouts import conda_pkg, conda_prefix, conda_torch, pip_dist, pip_torch, venv
from support.pins import CUDA_126

from gpuprov.core import image_build

ROOT = Path(__file__).resolve().parents[2]
PROMISES = CUDA_126


def pin_inventory(tmp_path: Path, promises: dict = PROMISES) -> Path:
    inv = tmp_path / "inventory"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    h1: {}\n")
    pin = {"reference": "registry.local/team/torch", "source": "build", "promises": promises}
    (inv / "group_vars" / "all" / "image.yml").write_text(yaml.safe_dump({"gpuprov_image": pin}))
    return inv


def build(docker_env: dict, base_image: str, context: Path, tag: str, manager: str, labels=None):
    """An image FROM the bed's base with the layout under context/root and gpuprov's labels."""
    found = labels if labels is not None else image_build.labels(PROMISES, manager)
    label_lines = " \\\n    ".join(f'{k}="{v}"' for k, v in sorted(found.items()))
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY root/ /\nENV CUDA_VERSION=12.6.3\n"
        + (f"LABEL {label_lines}\n" if found else "")
    )
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)],
        env={**os.environ, **docker_env},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return tag


def audit(docker_env: dict, inventory: Path, image: str) -> tuple[int, dict, str]:
    done = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "audit", "-i", str(inventory), "--json", image],
        env={**os.environ, **docker_env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout else {}, done.stderr


def failures(report: dict) -> list[str]:
    return [f["message"] for f in report["findings"] if f["severity"] == "fail"]


LAYOUTS = {}


def layout(name):
    def register(func):
        LAYOUTS[name] = func
        return func

    return register


@layout("pip-only")
def _pip_only(root: Path) -> str:
    pip_torch(venv(root))
    return "pip"


@layout("conda-only")
def _conda_only(root: Path) -> str:
    conda_torch(conda_prefix(root))
    return "conda"


@layout("conda-torch-pip-torchvision")
def _mixed(root: Path) -> str:
    prefix = conda_prefix(root)
    conda_pkg(prefix, "pytorch", "2.7.1", "cuda126_generic_py311_h5a2c0f3_200", dist="torch")
    conda_pkg(prefix, "torchaudio", "2.7.1", "cuda126_py311_h7e8f9a0_0", dist="torchaudio")
    conda_pkg(prefix, "cudnn", "9.5.1.17", "hbc370b7_0")
    site = prefix / "lib" / "python3.11" / "site-packages"
    pip_dist(site, "torchvision", "0.22.1+cu126", requires=("torch==2.7.1",))
    return "conda"


@layout("numpy-twice")
def _numpy_twice(root: Path) -> str:
    prefix = conda_prefix(root)
    conda_torch(prefix)
    pip_dist(prefix / "lib" / "python3.11" / "site-packages", "numpy", "2.3.5")
    return "conda"


@layout("cu126-with-cu128")
def _cuda_mix(root: Path) -> str:
    pip_torch(venv(root), vision="0.22.1+cu128")
    return "pip"


EXPECTED = {
    "pip-only": None,
    "conda-only": None,
    "conda-torch-pip-torchvision": "come from different managers",
    "numpy-twice": "numpy is installed 2 times",
    "cu126-with-cu128": "the torch family mixes CUDA builds",
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_audit_of_real_image_layouts(
    name: str, tmp_path: Path, docker_env: dict, base_image: str
) -> None:
    context = tmp_path / "context"
    (context / "root").mkdir(parents=True)
    manager = LAYOUTS[name](context / "root")
    image = build(docker_env, base_image, context, f"gpuprov-test/audit-{name}:1", manager)
    rc, report, err = audit(docker_env, pin_inventory(tmp_path), image)
    expected = EXPECTED[name]
    if expected is None:
        assert (rc, failures(report)) == (0, []), err
        assert {r["name"] for r in report["rows"]} >= {"torch", "torchvision", "torchaudio"}
    else:
        assert rc == 1, err
        assert any(expected in m for m in failures(report)), failures(report)


def test_labels_differing_from_the_pin_fail(tmp_path: Path, docker_env: dict, base_image: str):
    context = tmp_path / "context"
    (context / "root").mkdir(parents=True)
    pip_torch(venv(context / "root"))
    labels = image_build.labels({**PROMISES, "torch": "2.7.0"}, "pip")
    image = build(docker_env, base_image, context, "gpuprov-test/audit-labels:1", "pip", labels)
    rc, report, _ = audit(docker_env, pin_inventory(tmp_path), image)
    assert rc == 1
    assert any(
        "image label org.gpuprov.torch is '2.7.0' but the pin promises '2.7.1'" in m
        for m in failures(report)
    )


def test_the_table_names_the_verdict_and_a_missing_image_is_an_error(
    tmp_path: Path, docker_env: dict
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpuprov.cli",
            "audit",
            "-i",
            str(pin_inventory(tmp_path)),
            "gpuprov-test/no-such-image:1",
        ],
        env={**os.environ, **docker_env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "gpuprov audit: cannot audit gpuprov-test/no-such-image:1" in done.stderr
