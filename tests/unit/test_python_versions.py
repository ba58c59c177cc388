"""The controller's Python range is ansible-core's own: no narrower, no wider."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def minors(classifiers: list[str]) -> set[str]:
    return {
        found[1]
        for line in classifiers
        if (found := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", line))
    }


def test_requires_python_is_ansible_cores_range():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    core = metadata.metadata("ansible-core")
    supported = minors(core.get_all("Classifier") or [])
    lowest = min(supported, key=lambda v: int(v.split(".")[1]))
    highest = max(supported, key=lambda v: int(v.split(".")[1]))
    after = f"3.{int(highest.split('.')[1]) + 1}"
    assert core["Requires-Python"] == f">={lowest}"
    assert project["requires-python"] == f">={lowest},<{after}"
    assert minors(project["classifiers"]) == supported
