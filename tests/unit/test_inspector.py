"""The inspector run for real, as a subprocess, over on-disk layouts shaped like pip's and
conda's, and its output judged by the audit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.layouts import (
    CONDA_FORGE,
    CUDA_RUNTIME_126,
    PY,
    conda_pkg,
    conda_prefix,
    conda_torch,
    pip_dist,
    pip_torch,
    venv,
)

from gpuprov.core.audit import IMAGE_LABELS, audit_image
from gpuprov.core.torch_matrix import build_for_cuda_version, cuda_build_of, cuda_build_of_conda

INSPECTOR = Path(__file__).resolve().parents[2] / "gpuprov" / "inspector.py"


def inspect(root: Path, python: str = sys.executable) -> dict:
    done = subprocess.run(
        [python, str(INSPECTOR), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


PIN = {
    "reference": "registry.local/team/torch",
    "digest": "sha256:" + "a" * 64,
    "promises": {
        "python": PY,
        "torch": "2.7.1",
        "torchvision": "0.22.1",
        "torchaudio": "2.7.1",
        "cuda": "12.6",
        "cudnn": "9.5.1.17",
    },
}


def labels_for(pin: dict, manager: str) -> dict:
    labels = {IMAGE_LABELS[k]: str(v) for k, v in pin["promises"].items() if v is not None}
    labels[IMAGE_LABELS["package_manager"]] = manager
    return labels


def fails(report) -> list[str]:
    return [f.message for f in report.findings if f.severity == "fail"]


def env_of(doc: dict, prefix: str) -> dict:
    return next(e for e in doc["environments"] if e["prefix"] == prefix)


# --- tests -----------------------------------------------------------------------------


def test_pip_only_image_is_clean(tmp_path):
    pip_torch(venv(tmp_path))
    doc = inspect(tmp_path)

    env = env_of(doc, "/opt/venv")
    assert (env["kind"], env["python"]) == ("venv", PY)
    torch = next(r for r in env["records"] if r["name"] == "torch")
    assert torch["installer"] == "pip"
    assert torch["cuda_build"] == "cu126"
    assert torch["path"] == "/opt/venv/lib/python3.11/site-packages/torch-2.7.1+cu126.dist-info"

    report = audit_image(doc, labels_for(PIN, "pip"), "12.6.3", PIN)
    assert report.findings == ()
    assert [(r.name, r.manager, r.cuda_build) for r in report.rows] == [
        ("torch", "pip", "cu126"),
        ("torchvision", "pip", "cu126"),
        ("torchaudio", "pip", "cu126"),
        ("numpy", "pip", None),
    ]


def test_conda_only_image_is_clean_though_conda_also_writes_dist_info(tmp_path):
    prefix = conda_prefix(tmp_path)
    conda_torch(prefix)
    doc = inspect(tmp_path)

    assert [e["prefix"] for e in doc["environments"]] == ["/opt/conda"]
    env = env_of(doc, "/opt/conda")
    assert env["kind"] == "conda" and env["python"] == PY
    pytorch = next(
        r for r in env["records"] if r["kind"] == "conda-meta" and r["name"] == "pytorch"
    )
    assert pytorch["python_dists"] == ["lib/python3.11/site-packages/torch-2.7.1.dist-info"]
    assert pytorch["channel"] == f"{CONDA_FORGE}/linux-64"
    torch_dist = next(
        r for r in env["records"] if r["kind"] == "dist-info" and r["name"] == "torch"
    )
    assert (torch_dist["installer"], torch_dist["conda_package"]) == ("conda", "pytorch")

    report = audit_image(doc, labels_for(PIN, "conda"), "12.6.3", PIN)
    assert report.findings == ()
    assert {(r.name, r.manager, r.cuda_build) for r in report.rows} == {
        ("torch", "conda", "cu126"),
        ("torchvision", "conda", "cu126"),
        ("torchaudio", "conda", "cu126"),
        ("numpy", "conda", None),
    }


def test_conda_torch_with_pip_torchvision_fails(tmp_path):
    prefix = conda_prefix(tmp_path)
    conda_pkg(prefix, "pytorch", "2.7.1", "cuda126_generic_py311_h5a2c0f3_200", dist="torch")
    conda_pkg(prefix, "torchaudio", "2.7.1", "cuda126_py311_h7e8f9a0_0", dist="torchaudio")
    conda_pkg(prefix, "cudnn", "9.5.1.17", "hbc370b7_0")
    site = prefix / "lib" / f"python{PY}" / "site-packages"
    pip_dist(site, "torchvision", "0.22.1+cu126", direct_url=None)

    report = audit_image(inspect(tmp_path), labels_for(PIN, "conda"), "12.6.3", PIN)
    assert not report.passed
    [mixed] = [m for m in fails(report) if "different managers" in m]
    assert "torch by conda" in mixed and "torchvision by pip" in mixed


def test_numpy_installed_by_conda_and_pip_fails(tmp_path):
    prefix = conda_prefix(tmp_path)
    conda_torch(prefix)
    pip_dist(prefix / "lib" / f"python{PY}" / "site-packages", "numpy", "2.3.1")

    report = audit_image(inspect(tmp_path), labels_for(PIN, "conda"), "12.6.3", PIN)
    [twice] = fails(report)
    assert twice.startswith("numpy is installed 2 times in /opt/conda: conda 2.2.6")
    assert "pip 2.3.1" in twice
    numpy_rows = [(r.manager, r.version) for r in report.rows if r.name == "numpy"]
    assert sorted(numpy_rows) == [("conda", "2.2.6"), ("pip", "2.3.1")]


def test_pip_install_over_conda_torch_is_a_double_install(tmp_path):
    """`pip install torch` in a conda env removes conda's dist-info but not its record."""
    prefix = conda_prefix(tmp_path)
    conda_torch(prefix)
    site = prefix / "lib" / f"python{PY}" / "site-packages"
    for path in sorted((site / "torch-2.7.1.dist-info").iterdir()):
        path.unlink()
    (site / "torch-2.7.1.dist-info").rmdir()
    pip_dist(site, "torch", "2.7.1+cu126", requires=(CUDA_RUNTIME_126,), package="torch_pip")

    report = audit_image(inspect(tmp_path), labels_for(PIN, "conda"), "12.6.3", PIN)
    assert any(m.startswith("torch is installed 2 times in /opt/conda") for m in fails(report))


def test_two_dist_infos_of_one_name_in_one_site_packages_fail(tmp_path):
    site = venv(tmp_path)
    pip_torch(site)
    pip_dist(site, "pillow", "10.4.0", package="PIL")
    pip_dist(site, "Pillow", "11.0.0", package="PIL", installer="uv")

    report = audit_image(inspect(tmp_path), labels_for(PIN, "pip"), "12.6.3", PIN)
    [twice] = fails(report)
    assert "pillow is installed 2 times in /opt/venv" in twice
    assert {r.version for r in report.rows if r.name == "pillow"} == {"10.4.0", "11.0.0"}


def test_debian_apt_package_and_pip_copy_are_one_environment(tmp_path):
    """python3-numpy from apt and a pip numpy in /usr/local: one interpreter sees both."""
    apt = tmp_path / "usr" / "lib" / "python3" / "dist-packages"
    apt.mkdir(parents=True)
    (apt / "numpy-1.24.2.egg-info").write_text(
        "Metadata-Version: 1.2\nName: numpy\nVersion: 1.24.2\n"
    )
    local = tmp_path / "usr" / "local" / "lib" / f"python{PY}" / "dist-packages"
    local.mkdir(parents=True)
    pip_torch(local)

    doc = inspect(tmp_path)
    env = env_of(doc, "/usr")
    assert sorted(env["site_dirs"]) == [
        "/usr/lib/python3/dist-packages",
        f"/usr/local/lib/python{PY}/dist-packages",
    ]
    report = audit_image(doc, labels_for(PIN, "pip"), "12.6.3", PIN)
    [twice] = fails(report)
    assert "numpy is installed 2 times in /usr" in twice and "unknown 1.24.2" in twice


def test_torch_cu126_with_torchvision_cu128_fails(tmp_path):
    pip_torch(venv(tmp_path), vision="0.22.1+cu128")

    report = audit_image(inspect(tmp_path), labels_for(PIN, "pip"), "12.6.3", PIN)
    [mixed] = [m for m in fails(report) if "mixes CUDA builds" in m]
    assert "torch cu126" in mixed and "torchvision cu128" in mixed


def test_a_triple_that_was_never_released_together_fails(tmp_path):
    pip_torch(venv(tmp_path), vision="0.23.0+cu126")
    pin = {**PIN, "promises": {**PIN["promises"], "torchvision": "0.23.0"}}

    report = audit_image(inspect(tmp_path), labels_for(pin, "pip"), "12.6.3", pin)
    assert fails(report) == [
        "/opt/venv: torchvision 0.23.0+cu126 was not released with torch 2.7.1+cu126: "
        "torch 2.7 goes with torchvision 0.22.x"
    ]


def test_labels_that_differ_from_the_pin_fail(tmp_path):
    pip_torch(venv(tmp_path))
    labels = labels_for(PIN, "pip") | {IMAGE_LABELS["torch"]: "2.6.0"}
    del labels[IMAGE_LABELS["cudnn"]]

    report = audit_image(inspect(tmp_path), labels, "12.6.3", PIN)
    assert sorted(fails(report)) == [
        "image label org.gpuprov.cudnn is None but the pin promises '9.5.1.17': rebuild the "
        "image from the pin with gpuprov's image template",
        "image label org.gpuprov.torch is '2.6.0' but the pin promises '2.7.1': rebuild the "
        "image from the pin with gpuprov's image template",
    ]


def test_garbled_metadata_is_reported_not_crashed(tmp_path):
    site = venv(tmp_path)
    pip_torch(site)
    broken = pip_dist(site, "requests", "2.32.3")
    (broken / "METADATA").write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    headless = pip_dist(site, "idna", "3.10")
    (headless / "METADATA").write_text("this is not an RFC 822 header block\n")
    (broken / "direct_url.json").write_text("{not json")
    meta = tmp_path / "opt" / "conda" / "conda-meta"
    meta.mkdir(parents=True)
    (meta / "zlib-1.3.1-hb9d3cd8_2.json").write_text('{"name": "zlib", "vers')

    doc = inspect(tmp_path)
    records = {r["name"]: r for r in env_of(doc, "/opt/venv")["records"]}
    assert records["requests"]["version"] == "2.32.3"  # from the folder name
    assert "METADATA" in records["requests"]["error"]
    assert "direct_url.json" in records["requests"]["error"]
    assert "no Name/Version" in records["idna"]["error"]
    [zlib] = env_of(doc, "/opt/conda")["records"]
    assert zlib["name"] == "zlib" and zlib["error"]

    report = audit_image(doc, labels_for(PIN, "pip"), "12.6.3", PIN)
    assert report.passed
    warned = [f.message for f in report.findings if f.severity == "warn"]
    assert len(warned) == 3
    assert any(
        "could not read /opt/venv/lib/python3.11/site-packages/requests" in w for w in warned
    )


def test_garbled_torch_metadata_fails_the_audit(tmp_path):
    site = venv(tmp_path)
    pip_torch(site)
    (site / "torch-2.7.1+cu126.dist-info" / "METADATA").write_bytes(b"\x80\x81")

    report = audit_image(inspect(tmp_path), labels_for(PIN, "pip"), "12.6.3", PIN)
    assert any("could not read" in m and "reinstall torch" in m for m in fails(report))


def test_cpu_image_passes_with_cpu_wheels_and_fails_with_a_cuda_one(tmp_path):
    pin = {
        **PIN,
        "promises": {**PIN["promises"], "cuda": "none", "cudnn": None, "torch": "2.13.0"},
    }
    pin["promises"].update(torchvision="0.28.0", torchaudio=None)
    site = venv(tmp_path)
    pip_dist(site, "torch", "2.13.0+cpu")
    pip_dist(site, "torchvision", "0.28.0+cpu")
    pip_dist(site, "numpy", "2.3.1")

    assert audit_image(inspect(tmp_path), labels_for(pin, "pip"), None, pin).findings == ()

    other = tmp_path / "other"
    site = venv(other)
    pip_dist(site, "torch", "2.13.0+cpu")
    pip_dist(site, "torchvision", "0.28.0+cu130")
    report = audit_image(inspect(other), labels_for(pin, "pip"), None, pin)
    assert any(
        "CPU image but torchvision 0.28.0+cu130 is the cu130 build" in m for m in fails(report)
    )


def test_pypi_default_torch_wheel_gets_its_build_from_the_cuda_runtime_requirement(tmp_path):
    site = venv(tmp_path)
    pip_dist(site, "torch", "2.8.0", requires=("nvidia-cuda-runtime-cu12==12.8.90",))
    record = next(
        r for r in env_of(inspect(tmp_path), "/opt/venv")["records"] if r["name"] == "torch"
    )
    assert (record["cuda_runtime"], record["cuda_build"]) == ("12.8", "cu128")


def test_inspector_tags_agree_with_the_core(tmp_path):
    """The inspector carries its own copy of the tag parser; it must not drift."""
    site = venv(tmp_path)
    pip_torch(site)
    pip_dist(site, "xformers", "0.0.30+cu128")
    pip_dist(site, "triton", "3.3.1", requires=("nvidia-cuda-runtime==13.0.96",))
    conda_torch(conda_prefix(tmp_path), cuda="cuda128")
    conda_pkg(tmp_path / "opt" / "conda", "magma", "2.8.0", "py3.11_cuda12.4_cudnn9.1.0_0")
    checked = 0
    for env in inspect(tmp_path)["environments"]:
        for record in env["records"]:
            if record["kind"] == "conda-meta":
                expected = cuda_build_of_conda(record["build"])
            else:
                expected = cuda_build_of(record["version"]) or (
                    build_for_cuda_version(record["cuda_runtime"])
                    if record["cuda_runtime"]
                    else None
                )
            assert record["cuda_build"] == expected, record
            checked += expected is not None
    assert checked == 9


OLD_PYTHON = Path("/root/.pyenv/versions/3.8.18/bin/python3")


@pytest.mark.skipif(not OLD_PYTHON.exists(), reason="needs a Python 3.8 interpreter")
def test_inspector_runs_on_python_3_8_as_old_images_carry(tmp_path):
    pip_torch(venv(tmp_path))
    assert inspect(tmp_path, str(OLD_PYTHON)) == inspect(tmp_path) | {
        "interpreter": {"prefix": None, "version": "3.8.18"}
    }


def test_inspector_reads_itself_from_stdin_like_docker_exec_does(tmp_path):
    pip_torch(venv(tmp_path))
    done = subprocess.run(
        [sys.executable, "-", "--root", str(tmp_path)],
        stdin=INSPECTOR.open(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["environments"][0]["prefix"] == "/opt/venv"


def test_inspector_refuses_a_root_that_is_not_a_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, str(INSPECTOR), "--root", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "is not a folder" in done.stderr


def test_inspector_skips_pseudo_filesystems_and_symlinked_lib64(tmp_path):
    site = venv(tmp_path)
    pip_torch(site)
    (tmp_path / "opt" / "venv" / "lib64").symlink_to("lib")
    proc_site = tmp_path / "proc" / "1" / "root" / "lib" / "python3.11" / "site-packages"
    pip_dist(proc_site, "numpy", "1.0")

    doc = inspect(tmp_path)
    assert [e["prefix"] for e in doc["environments"]] == ["/opt/venv"]
    assert env_of(doc, "/opt/venv")["site_dirs"] == [f"/opt/venv/lib/python{PY}/site-packages"]
    assert os.path.isdir(proc_site)
