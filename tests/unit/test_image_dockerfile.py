"""The team image's Dockerfile, rendered by Ansible from the role's defaults and a pin:
compared with a golden file, and linted for what the team image must be."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds each (ansible-playbook renders the Dockerfile):
# make quick leaves these out, make test runs them.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def render(tmp_path: Path, *extra: str) -> str:
    if not PLAYBOOK.exists() and shutil.which("ansible-playbook") is None:
        pytest.skip("ansible-playbook is not installed")
    context = tmp_path / "context"
    context.mkdir()
    done = subprocess.run(
        [
            str(PLAYBOOK) if PLAYBOOK.exists() else "ansible-playbook",
            "-i",
            "localhost,",
            str(GOLDEN / "render_dockerfile.yml"),
            "-e",
            f"@{GOLDEN / 'cuda-pin.yml'}",
            "-e",
            f"render_dir={context}",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (context / "Dockerfile").read_text()


# --- lint: the rules the team image's Dockerfile must keep ------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def lint(text: str) -> list[str]:
    problems = []
    steps = instructions(text)
    froms = [a for i, a in steps if i == "FROM"]
    if len(froms) != 1:
        problems.append(f"one FROM expected, found {len(froms)}")
    elif not re.search(r"(@sha256:[0-9a-f]{64}$)|(^sha256:[0-9a-f]{64}$)", froms[0]):
        problems.append(f"FROM {froms[0]} is not pinned by digest or image ID")
    runs = " ".join(a for i, a in steps if i == "RUN")
    managers = {
        m
        for m, pattern in (
            ("pip", r"\bpip install\b"),
            ("conda", r"\b(conda|mamba|micromamba) (create|install)\b"),
        )
        if re.search(pattern, runs)
    }
    if len(managers) != 1:
        problems.append(f"exactly one Python package manager expected, found {sorted(managers)}")
    if re.search(r"apt-get install(?![^&]*--no-install-recommends)", runs):
        problems.append("apt-get install without --no-install-recommends")
    if "apt-get update" in runs and "rm -rf /var/lib/apt/lists" not in runs:
        problems.append("apt lists left in the image")
    if re.search(r"apt-get install[^&]*python3-(torch|numpy|pip)\b", runs):
        problems.append("a Python package from apt next to the one package manager")
    users = [a for i, a in steps if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image's last USER must not be root")
    for word in ("ENTRYPOINT", "CMD"):
        value = [a for i, a in steps if i == word]
        if not value or not value[-1].startswith("["):
            problems.append(f"{word} must be in exec form")
    health = [a for i, a in steps if i == "HEALTHCHECK"]
    if not health or not re.search(r"\bCMD \[", health[-1]):
        problems.append("no HEALTHCHECK in exec form (CIS Docker 4.6)")
    if re.search(r":latest\b", text):
        problems.append("a floating :latest tag")
    if any(i == "ADD" and not a.startswith("http") for i, a in steps):
        problems.append("ADD of local files (use COPY)")
    return problems


def test_cuda_dockerfile_matches_the_golden_file(tmp_path: Path) -> None:
    rendered = render(tmp_path)
    golden = (GOLDEN / "Dockerfile.cuda").read_text()
    assert rendered == golden, (
        "the rendered Dockerfile changed; if on purpose, copy it over "
        f"tests/unit/golden/Dockerfile.cuda:\n{rendered}"
    )


def test_cuda_dockerfile_lints_clean(tmp_path: Path) -> None:
    text = render(tmp_path)
    assert lint(text) == []
    # The torch family comes from the cu126 index with the build in the version.
    requirement_labels = re.search(r'org\.gpuprov\.build\.requirements="([^"]+)"', text)
    assert requirement_labels is not None
    assert requirement_labels.group(1).split() == [
        "torch==2.7.1+cu126",
        "torchvision==0.22.1+cu126",
        "torchaudio==2.7.1+cu126",
        "numpy==2.3.5",
        "jupyterlab==4.6.6",
    ]
    assert "--extra-index-url https://download.pytorch.org/whl/cu126" in text
    for label in (
        'org.gpuprov.torch="2.7.1"',
        'org.gpuprov.cuda="12.6"',
        'org.gpuprov.package-manager="pip"',
        "org.opencontainers.image.base.name=",
    ):
        assert label in text


def test_conda_dockerfile_uses_conda_forge_alone(tmp_path: Path) -> None:
    text = render(
        tmp_path,
        "-e",
        '{"team_image_package_manager": "conda", "team_image_micromamba_sha256": "'
        + "e" * 64
        + '"}',
    )
    assert lint(text) == []
    assert "pip install" not in text
    assert "-c conda-forge" in text and "--override-channels" in text
    assert '"pytorch=2.7.1=cuda126*"' in text


def test_local_cpu_flavour_builds_from_an_image_id(tmp_path: Path) -> None:
    base_id = "sha256:" + "1" * 64
    text = render(
        tmp_path,
        "-e",
        '{"gpuprov_image": {"reference": "localhost/gpuprov/team-pytorch-cpu", "source": "build",'
        ' "flavour": "cpu", "promises": {"python": "3.11", "torch": "2.13.0+cpu", "cuda": "none",'
        ' "cudnn": "none"}}, "team_image_base_image": "localhost/gpuprov/debian:bookworm",'
        ' "team_image_base_local": true, "render_base_from": "' + base_id + '",'
        ' "team_image_apt_packages": [], "team_image_wheel_source": "local"}',
    )
    assert lint(text) == []
    assert f"FROM {base_id}\n" in text
    assert "--no-index --find-links /tmp/gpuprov/wheels" in text
    assert "apt-get" not in text


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ("FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04", "not pinned"),
        ("RUN micromamba create -p /opt/conda pytorch", "exactly one Python package manager"),
        ("USER root", "must not be root"),
        ("HEALTHCHECK NONE", "no HEALTHCHECK"),
    ],
)
def test_the_lint_catches_what_it_is_for(tmp_path: Path, broken: str, problem: str) -> None:
    text = (GOLDEN / "Dockerfile.cuda").read_text()
    if broken.startswith("FROM"):
        text = re.sub(r"^FROM .*$", broken, text, flags=re.M)
    else:
        text = text.replace("ENTRYPOINT", f"{broken}\nENTRYPOINT")
    assert any(problem in p for p in lint(text)), lint(text)
