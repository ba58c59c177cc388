"""The user's package layer: its rules, then the whole mechanism for real in a venv made
here (prepare-image, the `pip` command, the .pth, pip-reinstall) with wheels made here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.wheels import make_wheel

from gpuprov.core import user_layer
from gpuprov.core.user_layer import constraints_text, judge, layer_name, read_pins, refusals

# Seconds each (a real venv, pip and wheels made here):
# make quick leaves these out, make test runs them.
pytestmark = pytest.mark.slow

PINS = read_pins(
    constraints_text(
        [("torch", "2.7.1+cu126"), ("torchvision", "0.22.1+cu126"), ("numpy", "2.1.3"),
         ("nvidia-cudnn-cu12", "9.5.1.17"), ("Jinja2", "3.1.6")],
        "team/pytorch@sha256:abc",
    )
)  # fmt: skip


@pytest.mark.parametrize(
    ("python", "torch", "cuda", "expected"),
    [
        ("3.11", "2.7.1+cu126", None, "py3.11-torch2.7.1-cu126"),
        ("3.11.2", "2.13.0+cpu", None, "py3.11-torch2.13.0-cpu"),
        ("3.12", "2.7.1", "cu128", "py3.12-torch2.7.1-cu128"),  # conda: no local version
        ("3.11", None, None, "py3.11"),
    ],
)
def test_a_layer_is_keyed_by_python_torch_and_cuda_build(python, torch, cuda, expected):
    assert layer_name(python, torch, cuda) == expected


def test_the_constraints_pin_every_package_of_the_image():
    text = constraints_text([("torch", "2.7.1+cu126"), ("Jinja2", "3.1.6")], "team@sha256:1")
    assert "torch==2.7.1+cu126" in text.splitlines() and "Jinja2==3.1.6" in text.splitlines()
    assert "team@sha256:1" in text
    assert read_pins(text) == {"torch": ("torch", "2.7.1+cu126"), "jinja2": ("Jinja2", "3.1.6")}


@pytest.mark.parametrize(
    "requirement",
    ["torchvision==0.21", "torch<2", "numpy>=2.2", "numpy~=1.26", "torch!=2.7.1",
     "torch==2.7.1+cu128", "NumPy==1.*", "nvidia_cudnn_cu12==9.1.0.70", "torch===2.7.1"],
)  # fmt: skip
def test_a_requirement_that_would_replace_a_team_package_is_refused(requirement):
    refusal = judge(requirement, PINS)
    assert refusal is not None, requirement
    message = refusal.message()
    assert f"{refusal.name} {refusal.held} is part of the team image" in message
    assert "ask for a new pin" in message and requirement in message


@pytest.mark.parametrize(
    "requirement",
    ["tqdm", "tqdm==4.66", "torch", "torch==2.7.1", "torch==2.7.1+cu126", "torch>=2.7,<3",
     "numpy==2.1.*", "numpy~=2.1.0", "torchvision[extra]>=0.22", "numpy; python_version>'3'",
     "numpy>=3; sys_platform == 'win32'", "torch==2.7.1+CU126"],
)  # fmt: skip
def test_what_the_image_already_satisfies_or_does_not_hold_passes(requirement):
    assert judge(requirement, PINS) is None


def test_refusals_read_the_command_line_and_requirement_files(tmp_path):
    requirements = tmp_path / "req.txt"
    requirements.write_text(
        "# mine\ntqdm\nnumpy==1.26.4  # old\n-c other.txt\n"
        "torchvision==0.21 \\\n    --hash=sha256:0123\nnvidia-cudnn-cu12==9.1 --hash=sha256:4567\n"
    )
    found = refusals(
        ["install", "-q", "--index-url", "torch==1.0", "-r", str(requirements), "torch<2",
         "./local.whl", "https://example.invalid/x.tar.gz"],
        PINS,
    )  # fmt: skip
    assert [(r.name, r.requirement) for r in found] == [
        ("torch", "torch<2"), ("numpy", "numpy==1.26.4"), ("torchvision", "torchvision==0.21"),
        ("nvidia-cudnn-cu12", "nvidia-cudnn-cu12==9.1"),
    ]  # fmt: skip
    assert refusals(["download", "-d", "install", "numpy==2"], PINS) == []
    assert refusals(["download", "torch==1.0"], PINS) == []


def test_activate_puts_the_layer_behind_the_image(tmp_path, monkeypatch):
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "layer").write_text("py3.11-torch2.7.1-cu126\n")
    monkeypatch.setattr(user_layer, "ABI_FILE", str(tmp_path / "image" / "layer"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    added = user_layer.activate({"HOME": "/home/ada"})
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (
        added
        == f"/home/ada/.local/gpuprov/py3.11-torch2.7.1-cu126/lib/python{python}/site-packages"
    )
    assert sys.path[-1] == added
    assert user_layer.activate({}) is None


# --- the mechanism, for real -------------------------------------------------------------


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A venv standing in for the image's /opt/venv, holding a 'team' package, prepared
    by prepare-image into its own image directory."""
    root = tmp_path_factory.mktemp("layer")
    wheels = root / "wheels"
    make_wheel(wheels, "torch", "2.7.1+cu126")  # a stand-in: only its version matters here
    make_wheel(wheels, "torch-scatter", "2.1.2+pt25cu124")
    make_wheel(wheels, "torch-scatter", "2.1.2+pt27cu126")
    make_wheel(wheels, "teampkg", "1.0")
    make_wheel(wheels, "teampkg", "2.0")
    make_wheel(wheels, "userpkg", "0.1", requires=("teampkg>=1",))
    make_wheel(wheels, "needsnew", "0.1", requires=("teampkg>=2",))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "GPUPROV_IMAGE_DIR": str(root / "image"),
        "HOME": str(root / "home"),
    }
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-index", "-f", str(wheels),
         "teampkg==1.0", "torch"],
        check=True, env=env,
    )  # fmt: skip
    # A conda image's record of what it holds, which prepare-image pins for conda too.
    (venv / "conda-meta").mkdir()
    (venv / "conda-meta" / "pytorch-2.7.1-cuda126_h1.json").write_text(
        json.dumps({"name": "pytorch", "version": "2.7.1", "build": "cuda126_h1"})
    )
    source = Path(user_layer.__file__)
    subprocess.run(
        [python, str(source), "prepare-image", "cpu", "team@sha256:1"], check=True, env=env
    )
    (root / "home").mkdir(exist_ok=True)
    return {"root": root, "wheels": wheels, "env": env, "python": python}


def run(image: dict, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=image["env"], capture_output=True, text=True, timeout=120)


def where(image: dict, *modules: str) -> dict[str, str]:
    code = "; ".join(f"import {m}; print('{m}', {m}.__file__)" for m in modules)
    out = run(image, image["python"], "-c", code)
    assert out.returncode == 0, out.stderr
    return dict(line.split() for line in out.stdout.splitlines())


def test_prepare_image_writes_the_pins_the_abi_the_hook_and_quiet_jupyter(image):
    root = image["root"] / "image"
    assert "teampkg==1.0" in (root / "constraints.txt").read_text().splitlines()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (root / "layer").read_text().strip() == f"py{python}-torch2.7.1-cu126"
    assert os.access(root / "bin" / "pip", os.X_OK) and os.access(
        root / "bin" / "pip-reinstall", os.X_OK
    )
    assert (image["root"] / "venv/conda-meta/pinned").read_text() == "pytorch ==2.7.1\n"
    overrides = image["root"] / "venv/share/jupyter/lab/settings/overrides.json"
    assert '"fetchNews": "false"' in overrides.read_text()


def test_pip_install_lands_in_the_layer_and_imports_beside_the_team_package(image):
    pip = str(image["root"] / "image" / "bin" / "pip")
    out = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]), "userpkg")
    assert out.returncode == 0, out.stdout + out.stderr
    layer = Path(image["env"]["HOME"]) / ".local/gpuprov"
    assert list(layer.glob("*/lib/python*/site-packages/userpkg/__init__.py"))
    assert not list(layer.glob("*/lib/python*/site-packages/teampkg")), (
        "the team package was copied"
    )
    found = where(image, "userpkg", "teampkg")
    assert found["userpkg"].startswith(str(layer)) and found["teampkg"].startswith(
        str(image["root"] / "venv")
    )


def test_pip_refuses_to_replace_a_team_package_and_says_why(image):
    pip = str(image["root"] / "image" / "bin" / "pip")
    out = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]), "teampkg==2.0")
    assert out.returncode == 1
    assert "teampkg 1.0 is part of the team image" in out.stderr and "new pin" in out.stderr
    # A dependency that needs another version is stopped by the constraints themselves.
    out = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]), "needsnew")
    assert out.returncode != 0 and "teampkg" in out.stdout + out.stderr
    assert where(image, "teampkg")["teampkg"].startswith(str(image["root"] / "venv"))


def test_a_copy_planted_in_the_layer_never_shadows_the_image(image):
    layer = next(
        (Path(image["env"]["HOME"]) / ".local/gpuprov").glob("*/lib/python*/site-packages")
    )
    planted = layer / "teampkg"
    planted.mkdir()
    (planted / "__init__.py").write_text('VERSION = "planted"\n')
    try:
        out = run(image, image["python"], "-c", "import teampkg; print(teampkg.VERSION)")
        assert out.stdout.strip() == "1.0", out.stdout + out.stderr
    finally:
        (planted / "__init__.py").unlink()
        planted.rmdir()


def test_pip_reinstall_brings_another_images_packages_over(image):
    home = Path(image["env"]["HOME"]) / ".local/gpuprov"
    current = next(home.iterdir())
    old = home / "py3.10-torch2.6.0-cu124"
    current.rename(old)
    try:
        reinstall = str(image["root"] / "image" / "bin" / "pip-reinstall")
        out = run(image, reinstall, "--no-index", "-f", str(image["wheels"]))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "userpkg" in out.stdout
        assert where(image, "userpkg")["userpkg"].startswith(str(current))
        assert (old / "lib").is_dir(), "the old layer was removed"
    finally:
        subprocess.run(["rm", "-rf", str(old)], check=True)


def test_the_note_lists_what_a_user_installed_for_other_images():
    home = "/srv/gpuprov/ada/home"
    site = "lib/python3.11/site-packages"
    markers = [
        f"{home}/.local/gpuprov/py3.11-torch2.6.0-cu124/{site}/tqdm-4.66.0.dist-info/REQUESTED",
        f"{home}/.local/gpuprov/py3.11-torch2.6.0-cu124/{site}/rich_click-1.8.dist-info/REQUESTED",
        f"{home}/.local/gpuprov/py3.11-torch2.7.1-cu126/{site}/einops-0.8.dist-info/REQUESTED",
        f"/srv/gpuprov/bob/home/.local/gpuprov/py3.10/{site}/black-24.1.dist-info/REQUESTED",
        f"{home}/.local/gpuprov/py3.11-torch2.6.0-cu124/{site}/myproj-0.1.dist-info/REQUESTED",
        f"{home}/.local/gpuprov/py3.11-torch2.6.0-cu124/{site}/myproj-0.1.dist-info/direct_url.json",
        # already brought over: not listed again
        f"{home}/.local/gpuprov/py3.11-torch2.6.0-cu124/{site}/einops-0.7.dist-info/REQUESTED",
    ]
    note = user_layer.reinstall_note(markers, "py3.11-torch2.7.1-cu126", home)
    assert note.splitlines() == [
        "Your packages: pip install adds to ~/.local/gpuprov/py3.11-torch2.7.1-cu126"
        " (behind the team's)",
        "  installed for another image (py3.11-torch2.6.0-cu124): rich_click, tqdm",
        "  run pip-reinstall in a workspace to install them for this image",
        "  installed from a path or URL for another image (py3.11-torch2.6.0-cu124): myproj"
        " (install them again the way you did)",
    ]
    assert "another image" not in user_layer.reinstall_note(
        markers[2:3], "py3.11-torch2.7.1-cu126", home
    )


def test_the_pin_names_the_layer_its_build_will_keep():
    from gpuprov.core.image_build import user_layer as pinned_layer

    assert (
        pinned_layer({"python": "3.11", "torch": "2.7.1", "cuda": "12.6"})
        == "py3.11-torch2.7.1-cu126"
    )
    assert (
        pinned_layer({"python": "3.11", "torch": "2.13.0+cpu", "cuda": "none"})
        == "py3.11-torch2.13.0-cpu"
    )


@pytest.mark.parametrize(
    ("version", "torch", "why"),
    [
        ("2.1.2+pt25cu124", "2.7.1+cu126", "built for torch 2.5"),
        ("2.1.2+pt27cu124", "2.7.1+cu126", "built for cu124"),
        ("0.6.18+pt27cpu", "2.7.1+cu126", "built for cpu"),
        ("2.1.2+pt27cu126", "2.7.1+cu126", None),
        ("2.1.2+pt27cu126", "2.7.1", None),  # a conda torch names no build: the minor decides
        ("2.1.2", "2.7.1+cu126", None),
        ("1.0+local", "2.7.1+cu126", None),
    ],
)
def test_a_build_for_another_torch_or_cuda_is_named(version, torch, why):
    found = user_layer.built_for_another_torch(version, torch)
    assert (found is None) if why is None else (why in found), found


def test_a_compiled_extension_for_another_torch_is_taken_out_again(image):
    pip = str(image["root"] / "image" / "bin" / "pip")
    wrong = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]),
                "torch-scatter==2.1.2+pt25cu124")  # fmt: skip
    assert wrong.returncode == 1
    assert "torch-scatter was removed from your layer: it was built for torch 2.5" in wrong.stderr
    layer = Path(image["env"]["HOME"]) / ".local/gpuprov"
    assert not list(layer.glob("*/lib/python*/site-packages/torch_scatter*")), "it stayed"
    right = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]),
                "torch-scatter==2.1.2+pt27cu126")  # fmt: skip
    assert right.returncode == 0, right.stdout + right.stderr
    assert list(layer.glob("*/lib/python*/site-packages/torch_scatter-2.1.2+pt27cu126.dist-info"))


def test_pip_uninstall_takes_a_package_out_of_the_layer_only(image):
    pip = str(image["root"] / "image" / "bin" / "pip")
    out = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]), "userpkg")
    assert out.returncode == 0, out.stdout + out.stderr
    layer = Path(image["env"]["HOME"]) / ".local/gpuprov"
    removed = run(image, pip, "uninstall", "-y", "userpkg")
    assert removed.returncode == 0 and "userpkg" in removed.stdout, removed.stderr
    assert not list(layer.glob("*/lib/python*/site-packages/userpkg*"))
    team = run(image, pip, "uninstall", "-y", "teampkg")
    assert team.returncode == 1 and "teampkg 1.0 is part of the team image" in team.stderr
    assert where(image, "teampkg")["teampkg"].startswith(str(image["root"] / "venv"))


def test_a_personal_environment_has_its_kernel_its_packages_and_the_same_rails(image):
    bin_dir = image["root"] / "image" / "bin"
    make_wheel(image["wheels"], "projpkg", "0.3")
    created = run(image, str(bin_dir / "gpuprov-env"), "create", "proj")
    assert created.returncode == 0, created.stderr
    home = Path(image["env"]["HOME"])
    spec = json.loads((home / ".local/share/jupyter/kernels/gpuprov-proj/kernel.json").read_text())
    assert spec["argv"][:3] == [image["python"], "-m", "ipykernel_launcher"]
    assert spec["env"] == {"GPUPROV_ENV": "proj"}  # where it lies follows the image
    inside = {**image["env"], "GPUPROV_ENV": "proj"}
    pip = str(bin_dir / "pip")
    wheels = str(image["wheels"])
    out = subprocess.run([pip, "install", "--no-index", "-f", wheels, "projpkg"], env=inside,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    code = "import projpkg, teampkg; print(projpkg.__file__, teampkg.__file__)"
    found = subprocess.run(
        [image["python"], "-c", code], env=inside, capture_output=True, text=True
    )
    proj, team = found.stdout.split()
    assert "/envs/proj/" in proj and team.startswith(str(image["root"] / "venv"))
    outside = run(image, image["python"], "-c", "import projpkg")
    assert outside.returncode != 0, "the environment leaked into the default layer"
    refused = subprocess.run([pip, "install", "teampkg==2.0"], env=inside, capture_output=True,
                             text=True)  # fmt: skip
    assert refused.returncode == 1 and "part of the team image" in refused.stderr
    bad = run(image, str(bin_dir / "gpuprov-env"), "create", "../escape")
    assert bad.returncode == 2 and not (home / ".local/gpuprov/escape").exists()
    listed = run(image, str(bin_dir / "gpuprov-env"), "list")
    assert listed.stdout.split() == ["proj"]


def test_a_personal_environments_packages_are_not_another_layers():
    home = "/srv/gpuprov/ada/home"
    site = "lib/python3.11/site-packages"
    marker = f"{home}/.local/gpuprov/py3.11/envs/proj/{site}/x-1.dist-info/REQUESTED"
    assert user_layer.other_layers([marker], "py3.12") == user_layer.OtherLayers({}, {})


def test_python_dash_m_pip_goes_through_the_same_guard(image):
    """%pip in a notebook runs `python -m pip`: the image's .pth hands it to gpuprov_layer."""
    out = run(image, image["python"], "-m", "pip", "install", "teampkg==2.0")
    assert out.returncode == 1 and "teampkg 1.0 is part of the team image" in out.stderr
    user = run(image, image["python"], "-m", "pip", "install", "--user", "--no-index", "-f",
               str(image["wheels"]), "userpkg")  # fmt: skip
    assert user.returncode == 0, user.stdout + user.stderr
    assert "--user left out" in user.stderr
    assert where(image, "userpkg")["userpkg"].startswith(image["env"]["HOME"])
    # Nothing is exported: another interpreter (a venv the user made) is not redirected.
    env = run(image, image["python"], "-c", "import os; print(sorted(os.environ))").stdout
    assert "PIP_PREFIX" not in env and "PIP_CONSTRAINT" not in env


def test_an_upgrade_inside_the_layer_leaves_one_version(image):
    pip = str(image["root"] / "image" / "bin" / "pip")
    make_wheel(image["wheels"], "upgpkg", "1.0")
    make_wheel(image["wheels"], "upgpkg", "2.0")
    first = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]), "upgpkg==1.0")
    assert first.returncode == 0, first.stdout + first.stderr
    second = run(image, pip, "install", "--no-index", "-f", str(image["wheels"]), "-U", "upgpkg")
    assert second.returncode == 0, second.stdout + second.stderr
    layer = Path(image["env"]["HOME"]) / ".local/gpuprov"
    infos = sorted(p.name for p in layer.glob("*/lib/python*/site-packages/upgpkg-*.dist-info"))
    assert infos == ["upgpkg-2.0.dist-info"]
    version = run(image, image["python"], "-c", "import upgpkg; print(upgpkg.VERSION)")
    assert version.stdout.strip() == "2.0"


def test_a_pth_file_in_the_layer_cannot_put_anything_before_the_image(image):
    home = Path(image["env"]["HOME"])
    layer = next((home / ".local/gpuprov").glob("*/lib/python*/site-packages"))
    shadow = layer / "shadow"
    (shadow / "teampkg").mkdir(parents=True)
    (shadow / "teampkg" / "__init__.py").write_text('VERSION = "shadow"\n')
    (layer / "zz-shadow.pth").write_text(f"import sys; sys.path.insert(0, {str(shadow)!r})\n")
    try:
        out = run(image, image["python"], "-c", "import teampkg; print(teampkg.VERSION)")
        assert out.stdout.strip() == "1.0", out.stdout + out.stderr
    finally:
        (layer / "zz-shadow.pth").unlink()
        subprocess.run(["rm", "-rf", str(shadow)], check=True)
