"""List the Python packages inside a container image, as raw records, in one JSON document.

gpuprov copies this single file into the image and runs it with the image's own python:

    docker run --rm -v PATH/inspector.py:/gpuprov-inspector.py:ro IMAGE \
        python3 /gpuprov-inspector.py
    python3 - < inspector.py            # inside a running container

Options: --root DIR scans DIR as if it were '/' (reported paths stay image paths).

It reads metadata files only: it imports nothing from the image's packages (no torch,
no GPU), and a missing or garbled file becomes a record with an "error", never a crash.
Interpretation (what is a double install, what is allowed) is gpuprov.core.audit's job.

Standard library only, and syntax valid on Python 3.8: images carry old interpreters.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from email.parser import HeaderParser

SCHEMA = "gpuprov.inspector/1"

# Pseudo and volatile filesystems, and places that hold archives, not installs.
_SKIP_TOP = {"proc", "sys", "dev", "run", "tmp", "mnt", "media", "boot", "lost+found", "snap"}
# conda's package cache holds extracted packages with their own site-packages; they are
# not installed, so a prefix's 'pkgs' folder is never an environment.
_SKIP_NAMES = {"pkgs", "node_modules", ".git", "__pycache__", ".cache"}
_SITE_DIRS = {"site-packages", "dist-packages"}
_MAX_DEPTH = 12

_PY_DIR = re.compile(r"^python(\d+)\.(\d+)t?$")
_META_DIR = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+?)(?:-py\d[\d.]*)?\.(?P<kind>dist|egg)-info$"
)
_CUDA_RUNTIME = re.compile(
    r"^nvidia-cuda-runtime(?:-cu\d+)?\s*(?:\[[^\]]*\])?\s*==\s*(\d+)\.(\d+)[\d.]*", re.IGNORECASE
)
_CONDA_DOTTED = re.compile(r"(?:^|_)cuda(\d+)\.(\d+)(?:_|$)")
_CONDA_PACKED = re.compile(r"(?:^|_)cu(?:da)?(\d{3,})(?:_|$)")
_CONDA_CPU = re.compile(r"(?:^|_)cpu(?:_|$)")
_LOCAL_TAG = re.compile(r"^(cpu|cu\d{3,})$")


def normalise(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _image_path(root: str, path: str) -> str:
    rel = os.path.relpath(path, root)
    return "/" if rel == "." else "/" + rel.replace(os.sep, "/")


# --- CUDA build tags -------------------------------------------------------------------
# gpuprov.core.torch_matrix holds the authoritative parser; this copy exists because this
# file must run alone inside the image. The audit re-derives tags from the raw fields.


def _cuda_build_of_wheel(version: str, cuda_runtime: str | None) -> str | None:
    local = version.partition("+")[2].strip().lower()
    if _LOCAL_TAG.match(local):
        return local
    if cuda_runtime:
        major, minor = cuda_runtime.split(".")[:2]
        return f"cu{int(major)}{int(minor)}"
    return None


def _cuda_build_of_conda(build: str) -> str | None:
    build = build.strip().lower()
    match = _CONDA_DOTTED.search(build)
    if match:
        return "cu" + "".join(match.groups())
    match = _CONDA_PACKED.search(build)
    if match:
        return "cu" + match.group(1)
    return "cpu" if _CONDA_CPU.search(build) else None


# --- discovery -------------------------------------------------------------------------


def _walk(root: str, top: str, depth: int, found: dict[str, list[str]]) -> None:
    """Collect conda prefixes and site dirs under `top`, not following symlinks."""
    if depth > _MAX_DEPTH:
        return
    try:
        with os.scandir(top) as scan:
            entries = list(scan)
    except OSError:
        return
    names = {e.name for e in entries}
    if "conda-meta" in names:
        found["conda"].append(top)
    if "pyvenv.cfg" in names:
        found["venv"].append(top)
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        if entry.name in _SITE_DIRS:
            found["site"].append(entry.path)
            continue
        if entry.name in _SKIP_NAMES or entry.name == "conda-meta":
            continue
        if top == root and entry.name in _SKIP_TOP:
            continue
        _walk(root, entry.path, depth + 1, found)


def _environment_of(site_dir: str, prefixes: list[str]) -> tuple[str, str | None]:
    """The prefix a site dir belongs to, and the python X.Y its path names."""
    parts = site_dir.split(os.sep)
    python = None
    for part in parts:
        match = _PY_DIR.match(part)
        if match:
            python = ".".join(match.groups())
    for prefix in sorted(prefixes, key=len, reverse=True):
        if site_dir.startswith(prefix.rstrip(os.sep) + os.sep):
            return prefix, python
    # Debian's python3 reads /usr/lib/python3/dist-packages and
    # /usr/local/lib/python3.X/dist-packages: one interpreter, one environment.
    if parts[-1] == "dist-packages" and "lib" in parts:
        cut = parts.index("lib")
        prefix = os.sep.join(parts[:cut]) or os.sep
        if prefix.endswith(os.sep + "local"):
            prefix = prefix[: -len(os.sep + "local")]
        return prefix, python
    for marker in ("lib", "lib64"):
        if marker in parts:
            cut = len(parts) - 1 - parts[::-1].index(marker)
            return os.sep.join(parts[:cut]) or os.sep, python
    return os.path.dirname(site_dir), python


# --- records ---------------------------------------------------------------------------


def _conda_dists(paths: list[str]) -> list[str]:
    """The dist-info/egg-info folders (prefix-relative) a conda package installed."""
    dists = set()
    for path in paths:
        parts = path.replace("\\", "/").split("/")
        for i, part in enumerate(parts[:-1]):
            if part in _SITE_DIRS and _META_DIR.match(parts[i + 1]):
                dists.add("/".join(parts[: i + 2]))
                break
    return sorted(dists)


def _conda_record(root: str, path: str) -> dict:
    record = {"kind": "conda-meta", "path": _image_path(root, path), "installer": "conda"}
    try:
        data = json.loads(_read_text(path))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("no 'name'")
    except (OSError, ValueError) as exc:
        # conda names the file <name>-<version>-<build>.json
        stem = os.path.basename(path)[: -len(".json")]
        name = stem.rsplit("-", 2)[0]
        record.update(name=normalise(name), raw_name=stem, version=None, error=str(exc))
        return record
    files = data.get("files")
    if not isinstance(files, list):
        paths_data = data.get("paths_data")
        paths = paths_data.get("paths") if isinstance(paths_data, dict) else None
        files = (
            [p.get("_path") for p in paths if isinstance(p, dict)]
            if isinstance(paths, list)
            else None
        )
    build = data.get("build") if isinstance(data.get("build"), str) else ""
    record.update(
        name=normalise(name),
        raw_name=name,
        version=data.get("version"),
        build=build,
        channel=data.get("channel"),
        url=data.get("url"),
        requested_spec=data.get("requested_spec"),
        cuda_build=_cuda_build_of_conda(build),
        files_count=None if files is None else len(files),
        python_dists=None
        if files is None
        else _conda_dists([f for f in files if isinstance(f, str)]),
        error=None,
    )
    return record


def _headers(path: str) -> dict:
    """METADATA / PKG-INFO headers; raises ValueError when there are none to read."""
    text = _read_text(path)
    message = HeaderParser().parsestr(text)
    name, version = message.get("Name"), message.get("Version")
    if not name or not version:
        raise ValueError(f"{os.path.basename(path)} has no Name/Version header")
    requires = message.get_all("Requires-Dist") or []
    return {"name": name.strip(), "version": version.strip(), "requires": requires}


def _dist_record(root: str, site_dir: str, entry: str) -> dict:
    path = os.path.join(site_dir, entry)
    match = _META_DIR.match(entry)
    dir_name = match.group("name") if match else entry
    record = {
        "kind": "egg-info" if entry.endswith(".egg-info") else "dist-info",
        "path": _image_path(root, path),
        "site_dir": _image_path(root, site_dir),
        "name": normalise(dir_name),
        "version": match.group("version") if match else None,
        "installer": "unknown",
        "source": None,
        "cuda_runtime": None,
        "cuda_build": None,
        "error": None,
    }
    errors = []
    if os.path.isdir(path):
        meta = os.path.join(path, "METADATA" if entry.endswith(".dist-info") else "PKG-INFO")
        try:
            installer = _read_text(os.path.join(path, "INSTALLER")).strip().lower()
            record["installer"] = installer or "unknown"
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"INSTALLER: {exc}")
        direct_url = os.path.join(path, "direct_url.json")
        if os.path.exists(direct_url):
            try:
                url = json.loads(_read_text(direct_url)).get("url")
                record["source"] = url if isinstance(url, str) else None
            except (OSError, ValueError, AttributeError) as exc:
                errors.append(f"direct_url.json: {exc}")
    else:
        meta = path  # an egg-info file is itself PKG-INFO
    try:
        headers = _headers(meta)
        record["name"] = normalise(headers["name"])
        record["version"] = headers["version"]
        for requirement in headers["requires"]:
            runtime = _CUDA_RUNTIME.match(requirement.strip())
            if runtime:
                record["cuda_runtime"] = ".".join(runtime.groups())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        errors.append(f"{os.path.basename(meta)}: {exc}")
    if record["version"]:
        record["cuda_build"] = _cuda_build_of_wheel(record["version"], record["cuda_runtime"])
    if errors:
        record["error"] = "; ".join(errors)
    return record


def _conda_python(records: list[dict]) -> str | None:
    for record in records:
        if record["name"] == "python" and isinstance(record.get("version"), str):
            return ".".join(record["version"].split(".")[:2])
    return None


def _venv_python(prefix: str) -> str | None:
    try:
        text = _read_text(os.path.join(prefix, "pyvenv.cfg"))
    except (OSError, UnicodeDecodeError):
        return None
    match = re.search(r"^\s*version(?:_info)?\s*=\s*(\d+)\.(\d+)", text, re.MULTILINE)
    return ".".join(match.groups()) if match else None


def inspect(root: str = "/") -> dict:
    """Scan `root` and return the inspector's JSON document as a dict."""
    root = os.path.abspath(root)
    found: dict[str, list[str]] = {"conda": [], "venv": [], "site": []}
    _walk(root, root, 0, found)
    environments: dict[str, dict] = {}

    def environment(prefix: str, kind: str) -> dict:
        key = _image_path(root, prefix)
        if key not in environments:
            environments[key] = {
                "prefix": key,
                "kind": kind,
                "python": None,
                "site_dirs": [],
                "records": [],
            }
        return environments[key]

    for prefix in found["conda"]:
        env = environment(prefix, "conda")
        meta_dir = os.path.join(prefix, "conda-meta")
        try:
            names = sorted(n for n in os.listdir(meta_dir) if n.endswith(".json"))
        except OSError as exc:
            env["records"].append(
                {
                    "kind": "conda-meta",
                    "path": _image_path(root, meta_dir),
                    "name": None,
                    "version": None,
                    "installer": "conda",
                    "error": str(exc),
                }
            )
            continue
        env["records"].extend(_conda_record(root, os.path.join(meta_dir, n)) for n in names)
        env["python"] = _conda_python(env["records"])
    for prefix in found["venv"]:
        if _image_path(root, prefix) not in environments:
            environment(prefix, "venv")["python"] = _venv_python(prefix)
    prefixes = found["conda"] + found["venv"]
    for site_dir in sorted(found["site"]):
        prefix, python = _environment_of(site_dir, prefixes)
        env = environment(prefix, "system")
        env["python"] = env["python"] or python
        env["site_dirs"].append(_image_path(root, site_dir))
        try:
            entries = sorted(os.listdir(site_dir))
        except OSError as exc:
            env["records"].append(
                {
                    "kind": "site-dir",
                    "path": _image_path(root, site_dir),
                    "name": None,
                    "version": None,
                    "installer": "unknown",
                    "error": str(exc),
                }
            )
            continue
        env["records"].extend(
            _dist_record(root, site_dir, e)
            for e in entries
            if e.endswith(".dist-info") or e.endswith(".egg-info")
        )
    owned = {}
    for env in environments.values():
        for record in env["records"]:
            for dist in record.get("python_dists") or ():
                owned[env["prefix"].rstrip("/") + "/" + dist] = record["raw_name"]
    for env in environments.values():
        for record in env["records"]:
            if record["kind"] in ("dist-info", "egg-info"):
                record["conda_package"] = owned.get(record["path"])
    return {
        "schema": SCHEMA,
        "root": root,
        "interpreter": {
            "version": ".".join(str(n) for n in sys.version_info[:3]),
            "prefix": sys.prefix if root == os.sep else None,
        },
        "environments": [environments[k] for k in sorted(environments)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", default="/", help="scan this folder as if it were '/'")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root} is not a folder")
    json.dump(inspect(args.root), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
