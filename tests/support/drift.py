"""A team image for the drift tests: a venv standing in for the image's /opt/venv
(torch and a team package), prepared by prepare-image, a user whose layer holds a
package installed the supported way, and wheels to plant drift with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gpuprov.core import user_layer
from support.wheels import make_wheel


def team_image(root: Path) -> dict:
    wheels = root / "wheels"
    make_wheel(wheels, "torch", "2.7.1+cu126")
    make_wheel(wheels, "torch", "2.6.0+cu124")
    make_wheel(wheels, "teampkg", "1.0")
    make_wheel(wheels, "teampkg", "2.0")
    make_wheel(wheels, "userpkg", "0.1")
    make_wheel(wheels, "torch-scatter", "2.1.2+pt25cu124")
    make_wheel(wheels, "torch-scatter", "2.1.2+pt27cu126")
    make_wheel(wheels, "oldtorchdep", "1.0", requires=("torch==2.5.1",))
    make_wheel(wheels, "numpy", "1.26.4")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))},
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "GPUPROV_IMAGE_DIR": str(root / "image"),
    }
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "teampkg==1.0", "torch==2.7.1+cu126"],
        check=True,
        env=env,
    )
    source = Path(user_layer.__file__)
    subprocess.run([python, str(source), "prepare-image", "", "team@sha256:1"], check=True, env=env)
    return {"root": root, "env": env, "python": python, "bin": root / "image" / "bin"}


def user_home(image: dict, home: Path) -> Path:
    """A home whose layer holds userpkg, installed with the workspace's own pip."""
    home.mkdir(parents=True)
    done = subprocess.run(
        [str(image["bin"] / "pip"), "install", "-q", "userpkg"],
        env={**image["env"], "HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def plain_pip(image: dict, *args: str) -> None:
    """pip without the workspace's guard rails: how drift gets planted."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *args],
        env=image["env"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
