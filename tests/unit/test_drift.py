"""The drift inspection, run the way gpuprov runs it in a workspace: its program fed to
the image's Python on stdin, as the user (HOME), over real layouts made with real pip:
a venv standing in for the image, the user's layer, a venv and a conda env in the
home, PYTHONPATH, a layer of an earlier image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.drift import plain_pip, team_image, user_home
from support.layouts import conda_pkg

from gpuprov.core import drift

# Seconds each (real venvs and pip):
# make quick leaves these out, make test runs them.
pytestmark = pytest.mark.slow

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
OLD_LAYER = "py3.10-torch2.6.0-cu124"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return team_image(tmp_path_factory.mktemp("drift"))


@pytest.fixture
def home(image, tmp_path):
    return user_home(image, tmp_path / "home")


def layer(home: Path) -> Path:
    (found,) = (home / ".local/gpuprov").glob("py*-torch2.7.1-cu126")
    return found


def inspect(image: dict, home: Path, **env: str) -> dict:
    """The program gpuprov sends, run by the image's Python as the user in their home."""
    done = subprocess.run(
        [image["python"], "-"],
        input=drift.program(),
        env={**image["env"], "HOME": str(home), **env},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def by_kind(report: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["kind"], []).append(finding)
    return found


def test_a_clean_workspace_has_no_drift(image, home):
    report = inspect(image, home)
    assert report["state"] == "ok", report
    assert report["findings"] == [] and report["unread"] == []
    assert report["layer"] == f"py{PYTHON}-torch2.7.1-cu126"


def test_a_package_on_pythonpath_shadows_the_team_package(image, home):
    shadow = home / "shadow"
    plain_pip(image, "--target", str(shadow), "teampkg==2.0")
    report = inspect(image, home, PYTHONPATH=str(shadow))
    (found,) = by_kind(report)["shadowed"]
    assert found["package"] == "teampkg"
    assert found["where"] == str(shadow / "teampkg" / "__init__.py")
    assert "instead of the team image's teampkg 1.0" in found["detail"]
    assert found["fix"] == f"take {shadow} out of PYTHONPATH (it comes before the team's packages)"
    assert "replaced" not in by_kind(report), "one copy, one finding"


def test_a_module_in_the_working_directory_shadows_the_team_package(image, home):
    (home / "teampkg.py").write_text("VERSION = 'mine'\n")
    (found,) = by_kind(inspect(image, home))["shadowed"]
    assert found["where"] == str(home / "teampkg.py")
    assert found["fix"].startswith(f"rename or move {home / 'teampkg.py'}")


def test_a_venv_in_the_home_with_a_second_torch_replaces_the_teams(image, home):
    env = home / "projects" / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next(env.glob("lib/python*/site-packages"))
    plain_pip(image, "--target", str(site), "torch==2.6.0+cu124", "teampkg==1.0")
    (found,) = by_kind(inspect(image, home))["replaced"]
    assert found["package"] == "torch"
    assert found["where"] == str(site / "torch-2.6.0+cu124.dist-info")
    assert found["detail"] == (
        f"the environment {env} holds torch 2.6.0+cu124; the team image holds 2.7.1+cu126"
    )
    assert "new pin" in found["fix"]


def test_a_build_for_another_torch_in_the_layer_is_named(image, home):
    site = layer(home) / "lib" / f"python{PYTHON}" / "site-packages"
    plain_pip(image, "--target", str(site), "torch-scatter==2.1.2+pt25cu124", "oldtorchdep")
    found = {f["package"]: f for f in by_kind(inspect(image, home))["other-build"]}
    assert sorted(found) == ["oldtorchdep", "torch-scatter"]
    assert "built for torch 2.5" in found["torch-scatter"]["detail"]
    assert found["oldtorchdep"]["detail"] == (
        "oldtorchdep 1.0: it requires torch==2.5.1, the image holds torch 2.7.1+cu126"
    )
    assert found["torch-scatter"]["fix"].startswith("pip uninstall torch-scatter")


def test_the_build_for_the_images_torch_is_not_drift(image, home):
    site = layer(home) / "lib" / f"python{PYTHON}" / "site-packages"
    plain_pip(image, "--target", str(site), "torch-scatter==2.1.2+pt27cu126")
    assert inspect(image, home)["findings"] == []


def test_conda_and_pip_managing_one_package_is_named(image, home):
    prefix = home / "miniconda3"
    conda_pkg(prefix, "numpy", "2.2.6", "py311h5d046bc_0", dist="numpy")
    site = next(prefix.glob("lib/python*/site-packages"))
    plain_pip(image, "--target", str(site), "numpy==1.26.4")
    (found,) = by_kind(inspect(image, home))["two-managers"]
    assert found["package"] == "numpy"
    assert found["where"] == str(site / "numpy-1.26.4.dist-info")
    assert f"conda installed numpy in {prefix}" in found["detail"]
    assert "conda install --force-reinstall numpy" in found["fix"]


def test_a_layer_of_an_earlier_image_lists_what_was_not_brought_over(image, home):
    old = home / ".local/gpuprov" / OLD_LAYER
    plain_pip(image, "--prefix", str(old), "numpy==1.26.4", "userpkg")
    report = inspect(image, home)
    (found,) = by_kind(report)["stale-layer"]
    assert found["package"] == "numpy", "userpkg is in the current layer already"
    assert found["where"] == str(old)
    assert found["fix"].startswith("run pip-reinstall in the workspace")
    assert "stays on disk" in found["fix"]
    assert old.is_dir(), "the inspection never deletes"


def test_what_cannot_be_read_makes_the_report_unknown(image, home):
    report = inspect(image, Path("/"))
    assert report["state"] == "unknown"
    assert any("HOME is not set" in why for why in report["unread"])


def test_the_program_needs_nothing_but_the_standard_library_and_fits_a_shell_word(tmp_path):
    text = drift.program()
    assert "'" not in text
    assert len(text.encode()) < 64 * 1024, "it travels inside one command line"
    # -S -I: no site-packages, no working directory: gpuprov cannot be imported.
    done = subprocess.run(
        [sys.executable, "-S", "-I", "-"],
        input=text,
        env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["home"] == str(tmp_path)


def test_a_report_reads_back_from_its_json():
    report = drift.Report(
        "/home/ada",
        "py3.11",
        (drift.Finding("shadowed", "torch", "/x/torch", "d", "f"),),
        ("/x: denied",),
    )
    assert drift.report_from_dict(json.loads(json.dumps(report.to_dict()))) == report
    with pytest.raises(ValueError, match="not a drift report"):
        drift.report_from_dict({"home": "/"})
