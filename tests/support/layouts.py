"""Python environments laid out on disk the way pip and conda write them, for the
inspector and the audit to read (unit tests, and images the integration tests build)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

PY = "3.11"
CONDA_FORGE = "https://conda.anaconda.org/conda-forge"


def _record_line(site: Path, path: Path) -> str:
    if not path.is_file() or path.name == "RECORD":
        return f"{path.relative_to(site).as_posix()},,"
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=")
    return f"{path.relative_to(site).as_posix()},sha256={digest.decode()},{path.stat().st_size}"


def pip_dist(
    site: Path,
    name: str,
    version: str,
    *,
    installer: str | None = "pip",
    requires: tuple[str, ...] = (),
    direct_url: str | None = None,
    package: str | None = None,
) -> Path:
    """A wheel installed by pip: package folder, METADATA, WHEEL, RECORD, INSTALLER..."""
    package = package or name.replace("-", "_")
    (site / package).mkdir(parents=True, exist_ok=True)
    (site / package / "__init__.py").write_text(f'__version__ = "{version}"\n')
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {name} test fixture",
        "Requires-Python: >=3.9",
        *(f"Requires-Dist: {r}" for r in requires),
        "",
        f"{name} long description.",
    ]
    (dist / "METADATA").write_text("\n".join(metadata) + "\n")
    (dist / "WHEEL").write_text(
        "Wheel-Version: 1.0\nGenerator: bdist_wheel (0.43.0)\nRoot-Is-Purelib: false\n"
        "Tag: cp311-cp311-manylinux_2_28_x86_64\n"
    )
    (dist / "top_level.txt").write_text(f"{package}\n")
    if installer is not None:
        (dist / "INSTALLER").write_text(f"{installer}\n")
        (dist / "REQUESTED").write_text("")
    if direct_url:
        (dist / "direct_url.json").write_text(json.dumps({"url": direct_url, "archive_info": {}}))
    files = [p for p in (site / package).rglob("*")] + sorted(dist.iterdir()) + [dist / "RECORD"]
    (dist / "RECORD").write_text("\n".join(_record_line(site, p) for p in files) + "\n")
    return dist


def conda_pkg(
    prefix: Path,
    name: str,
    version: str,
    build: str,
    *,
    dist: str | None = None,
    channel: str = CONDA_FORGE,
) -> dict:
    """A conda-meta record as conda writes it; `dist` also links a dist-info (INSTALLER
    conda) into site-packages, listed in the record's files like conda does."""
    site = prefix / "lib" / f"python{PY}" / "site-packages"
    files: list[str] = []
    if dist:
        dist_dir = pip_dist(site, dist, version, installer="conda")
        files = sorted(
            p.relative_to(prefix).as_posix()
            for p in [*(site / dist.replace("-", "_")).rglob("*"), *dist_dir.iterdir()]
            if p.is_file()
        )
    subdir = "linux-64"
    fn = f"{name}-{version}-{build}.conda"
    record = {
        "arch": "x86_64",
        "build": build,
        "build_number": 0,
        "channel": f"{channel}/{subdir}",
        "constrains": [],
        "depends": [f"python >={PY},<{PY[:-2]}.{int(PY[-2:]) + 1}.0a0"],
        "extracted_package_dir": f"/opt/conda/pkgs/{fn[:-6]}",
        "files": files,
        "fn": fn,
        "license": "BSD-3-Clause",
        "link": {"source": f"/opt/conda/pkgs/{fn[:-6]}", "type": 1},
        "md5": "0" * 32,
        "name": name,
        "package_tarball_full_path": f"/opt/conda/pkgs/{fn}",
        "paths_data": {
            "paths": [{"_path": f, "path_type": "hardlink", "size_in_bytes": 1} for f in files],
            "paths_version": 1,
        },
        "platform": "linux",
        "requested_spec": f"conda-forge::{name}={version}",
        "sha256": "0" * 64,
        "size": 1,
        "subdir": subdir,
        "timestamp": 1730000000000,
        "url": f"{channel}/{subdir}/{fn}",
        "version": version,
    }
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    (prefix / "conda-meta" / f"{name}-{version}-{build}.json").write_text(json.dumps(record))
    (prefix / "conda-meta" / "history").touch()
    return record


def venv(root: Path, where: str = "opt/venv") -> Path:
    prefix = root / where
    (prefix / "bin").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {PY}.2\n"
    )
    site = prefix / "lib" / f"python{PY}" / "site-packages"
    site.mkdir(parents=True)
    return site


def conda_prefix(root: Path) -> Path:
    prefix = root / "opt" / "conda"
    conda_pkg(prefix, "python", f"{PY}.9", "h9e4cc4f_0_cpython")
    # The package cache is not an environment, though it holds site-packages.
    cached = prefix / "pkgs" / "numpy-1.0-0" / "lib" / f"python{PY}" / "site-packages"
    pip_dist(cached, "numpy", "1.0", installer=None)
    return prefix


CUDA_RUNTIME_126 = (
    'nvidia-cuda-runtime-cu12==12.6.77; platform_system == "Linux" and platform_machine == "x86_64"'
)


def pip_torch(site: Path, torch="2.7.1+cu126", vision="0.22.1+cu126", audio="2.7.1+cu126"):
    index = "https://download.pytorch.org/whl/cu126"
    pip_dist(site, "torch", torch, requires=(CUDA_RUNTIME_126, "filelock"))
    pip_dist(site, "torchvision", vision, requires=(f"torch=={torch}",))
    pip_dist(site, "torchaudio", audio, requires=(f"torch=={torch}",))
    pip_dist(site, "nvidia-cudnn-cu12", "9.5.1.17", package="nvidia")
    pip_dist(site, "numpy", "2.2.6")
    return index


def conda_torch(prefix: Path, cuda="cuda126"):
    conda_pkg(prefix, "pytorch", "2.7.1", f"{cuda}_generic_py311_h5a2c0f3_200", dist="torch")
    conda_pkg(prefix, "torchvision", "0.22.1", f"{cuda}_py311_h1b2c3d4_0", dist="torchvision")
    conda_pkg(prefix, "torchaudio", "2.7.1", f"{cuda}_py311_h7e8f9a0_0", dist="torchaudio")
    conda_pkg(prefix, "cudnn", "9.5.1.17", "hbc370b7_0")
    conda_pkg(prefix, "numpy", "2.2.6", "py311h5d046bc_0", dist="numpy")


# --- running and judging ---------------------------------------------------------------
