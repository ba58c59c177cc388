"""Drift of a running workspace: what in the user's reach hides or replaces the team
image's packages, was built for another torch, is managed by two package managers, or
waits in the layer of an earlier image.

It runs inside the workspace as its user, with the image's Python, so it sees the
``sys.path`` (PYTHONPATH, the user's layer, .pth files) and the home a notebook sees.
gpuprov sends it with user_layer on stdin (``program()``); it reads metadata files and
asks the import system where a name would load from, and imports none of the packages
it judges. Standard library only. The rules of the layer (its ABI, what a build for
another torch is, which packages of older layers were not brought over) are
user_layer's: this module applies them and never deletes anything.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import sys
import sysconfig
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

try:
    from . import user_layer
except ImportError:  # alone in a workspace: program() loaded user_layer under this name
    import gpuprov_user_layer as user_layer

SHADOWED = "shadowed"
REPLACED = "replaced"
OTHER_BUILD = "other-build"
TWO_MANAGERS = "two-managers"
STALE_LAYER = "stale-layer"
KINDS = (SHADOWED, REPLACED, OTHER_BUILD, TWO_MANAGERS, STALE_LAYER)

OK, DRIFT, UNKNOWN = "ok", "drift", "unknown"

# How deep under the home environments (a venv, a conda env) are looked for:
# ~/env, ~/.virtualenvs/x, ~/projects/x/.venv. Deeper is data, and slow to walk.
_ENV_DEPTH = 3
_NOT_ENVIRONMENTS = {".cache", ".git", "node_modules", "__pycache__", "site-packages", "pkgs"}


@dataclass(frozen=True)
class Finding:
    """One thing that drifted, and what a person does about it."""

    kind: str
    package: str
    where: str
    detail: str
    fix: str


@dataclass(frozen=True)
class Report:
    """A workspace's drift, as its user sees it; ``unread`` names what could not be read,
    which makes a report without findings unknown, never ok."""

    home: str
    layer: str | None
    findings: tuple[Finding, ...] = ()
    unread: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        if self.findings:
            return DRIFT
        return UNKNOWN if self.unread else OK

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "state": self.state}


def report_from_dict(data: Mapping[str, object]) -> Report:
    """A report as ``to_dict`` wrote it (the controller reads what a workspace printed);
    raises ValueError when it is not one."""
    try:
        findings = tuple(Finding(**item) for item in data["findings"])
        return Report(
            str(data["home"]),
            None if data["layer"] is None else str(data["layer"]),
            findings,
            tuple(str(item) for item in data["unread"]),
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a drift report: {error}") from error


# --- reading distributions ----------------------------------------------------------


@dataclass(frozen=True)
class _Dist:
    name: str
    version: str
    path: str
    installer: str
    requires: tuple[str, ...]
    top_level: frozenset[str]


def _top_level(dist: metadata.Distribution) -> frozenset[str]:
    """The names a distribution can be imported by, from its RECORD (top_level.txt
    when there is none: it is optional, and stale in some wheels)."""
    names = set()
    for file in dist.files or ():
        first = file.parts[0]
        if first == ".." or first == "__pycache__" or first.endswith((".dist-info", ".data")):
            continue
        if len(file.parts) > 1:
            names.add(first)
        elif first.endswith(".py"):
            names.add(first[:-3])
        else:
            names.update(first[: -len(s)] for s in EXTENSION_SUFFIXES if first.endswith(s))
    if not names:
        names.update((dist.read_text("top_level.txt") or "").split())
    return frozenset(name for name in names if name.isidentifier())


def _read_dist(folder: Path) -> _Dist:
    dist = metadata.PathDistribution(folder)
    return _Dist(
        name=dist.metadata["Name"] or folder.name.split("-")[0],
        version=dist.version or "",
        path=str(folder),
        installer=(dist.read_text("INSTALLER") or "").strip().lower(),
        requires=tuple(dist.requires or ()),
        top_level=_top_level(dist),
    )


def _dists(site_dir: str, unread: list[str]) -> list[_Dist]:
    """The distributions installed in one directory; what cannot be read goes to unread."""
    try:
        entries = sorted(os.listdir(site_dir))
    except FileNotFoundError:
        return []
    except OSError as error:
        unread.append(f"{site_dir}: {error.strerror or error}")
        return []
    found = []
    for entry in entries:
        if entry.endswith((".dist-info", ".egg-info")):
            try:
                found.append(_read_dist(Path(site_dir, entry)))
            except (OSError, UnicodeDecodeError, ValueError) as error:
                unread.append(f"{Path(site_dir, entry)}: {error}")
    return found


def _site_dirs(prefix: str) -> list[str]:
    return sorted(str(p) for p in Path(prefix).glob("lib/python3*/site-packages"))


def _inside(path: str, roots: Iterable[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


# --- where things are -----------------------------------------------------------------


@dataclass(frozen=True)
class _Places:
    """The image's own site directories, the standard library's, and the home's."""

    image: tuple[str, ...]
    stdlib: tuple[str, ...]
    home: str
    layer: str | None

    @classmethod
    def of_this_python(cls, environ: Mapping[str, str]) -> _Places:
        paths = sysconfig.get_paths()
        image = {os.path.realpath(paths[k]) for k in ("purelib", "platlib")}
        stdlib = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")}
        home = environ.get("HOME", "")
        return cls(tuple(sorted(image)), tuple(sorted(stdlib)), home, user_layer.image_layer_name())

    def layer_prefix(self) -> str | None:
        if not self.home or self.home == "/" or not self.layer:
            return None
        return user_layer.layer_prefix(self.home, self.layer)

    def users(self, entry: str) -> bool:
        """Whether a sys.path entry is the user's (not the image's, not the stdlib's)."""
        return (
            not _inside(entry, self.image)
            and not _inside(entry, self.stdlib)
            and not (entry.endswith(".zip") and _inside(os.path.dirname(entry), self.stdlib))
        )


def _user_entries(places: _Places, path: list[str]) -> list[str]:
    entries = [os.getcwd() if entry == "" else entry for entry in path]
    return list(dict.fromkeys(e for e in entries if places.users(e) and os.path.isdir(e)))


def _environments_in(home: str, unread: list[str]) -> list[str]:
    """Python environments a user made in their home: a venv, a conda env."""
    found: list[str] = []

    def walk(folder: str, depth: int) -> None:
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except PermissionError as error:
            unread.append(f"{folder}: {error.strerror}")
            return
        except OSError:
            return
        names = {entry.name for entry in entries}
        if "pyvenv.cfg" in names or "conda-meta" in names:
            found.append(folder)
            return
        if depth == _ENV_DEPTH:
            return
        for entry in entries:
            if entry.name in _NOT_ENVIRONMENTS or not entry.is_dir(follow_symlinks=False):
                continue
            if os.path.join(folder, entry.name) == os.path.join(home, user_layer.LAYERS_IN_HOME):
                continue  # the layers have their own finding
            walk(entry.path, depth + 1)

    if home and home != "/":
        walk(home, 0)
    return sorted(found)


# --- the findings ---------------------------------------------------------------------


def _location(spec: importlib.machinery.ModuleSpec) -> str | None:
    if spec.has_location and spec.origin:
        return spec.origin
    return next(iter(spec.submodule_search_locations or ()), None)


def _shadow_fix(name: str, where: str, environ: Mapping[str, str]) -> str:
    pythonpath = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    entry = next((p for p in pythonpath if _inside(where, [os.path.realpath(p)])), None)
    if entry:
        return f"take {entry} out of PYTHONPATH (it comes before the team's packages)"
    if _inside(where, [os.path.realpath(os.getcwd())]):
        return (
            f"rename or move {where}: Python looks in the working directory first, so it "
            f"hides the team's {name}"
        )
    return f"remove {where} (pip uninstall the package that put it there)"


def _shadowed(
    places: _Places, image: Mapping[str, _Dist], environ: Mapping[str, str], unread: list[str]
) -> list[Finding]:
    """Image packages a name of which imports from somewhere else, as the import system
    (with the finders and .pth files of this start) resolves it."""
    findings = []
    for key in sorted(image):
        dist = image[key]
        for name in sorted(dist.top_level):
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError) as error:
                unread.append(f"where {name} imports from: {error}")
                continue
            where = _location(spec) if spec else None
            if where is None or not places.users(where):
                continue
            findings.append(
                Finding(
                    SHADOWED,
                    dist.name,
                    where,
                    f"import {name} loads {where} instead of the team image's "
                    f"{dist.name} {dist.version}",
                    _shadow_fix(name, where, environ),
                )
            )
    return findings


def _replaced(
    places: Iterable[tuple[str, str]],
    image: Mapping[str, _Dist],
    shadowed: set[str],
    unread: list[str],
) -> list[Finding]:
    """A team package at another version anywhere in the user's reach."""
    findings = []
    for site_dir, what in places:
        for dist in _dists(site_dir, unread):
            held = image.get(user_layer.canonical(dist.name))
            if held is None or dist.version == held.version or held.name in shadowed:
                continue
            findings.append(
                Finding(
                    REPLACED,
                    held.name,
                    dist.path,
                    f"{what} holds {dist.name} {dist.version}; the team image holds {held.version}",
                    f"uninstall it there and use the team's; for another version, {user_layer.ASK}",
                )
            )
    return findings


def _other_builds(
    layer_dirs: Iterable[str], torch: str | None, cuda_build: str | None, unread: list[str]
) -> list[Finding]:
    """Packages in the user's layers made for a torch or CUDA the image does not hold: by
    their version's tag (user_layer's rule), or by the torch their metadata requires."""
    if not torch:
        return []
    pins = {"torch": ("torch", torch)}
    findings = []
    for site_dir in layer_dirs:
        for dist in _dists(site_dir, unread):
            why = user_layer.built_for_another_torch(dist.version, torch, cuda_build)
            for requirement in dist.requires if why is None else ():
                if user_layer.judge(requirement, pins) is not None:
                    why = f"it requires {requirement.strip()}, the image holds torch {torch}"
                    break
            if why:
                findings.append(
                    Finding(
                        OTHER_BUILD,
                        dist.name,
                        dist.path,
                        f"{dist.name} {dist.version}: {why}",
                        f"pip uninstall {dist.name}, then pip install the build made for "
                        f"torch {torch}",
                    )
                )
    return findings


_CONDA_DIST = re.compile(r"(?:^|/)site-packages/([^/]+)-[^/-]+\.(?:dist|egg)-info/")


def _conda_names(prefix: str, unread: list[str]) -> tuple[dict[str, str], set[str]]:
    """conda's packages in a prefix, by the distribution names they ship (and their own
    name), and the dist-info folders conda wrote."""
    names: dict[str, str] = {}
    owned: set[str] = set()
    for record in sorted(Path(prefix, "conda-meta").glob("*.json")):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            conda_name = str(data["name"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            unread.append(f"{record}: {error}")
            continue
        names[user_layer.canonical(conda_name)] = conda_name
        for file in data.get("files") or ():
            found = _CONDA_DIST.search(str(file))
            if found:
                names[user_layer.canonical(found[1])] = conda_name
                owned.add(str(Path(prefix, str(file)[: found.end() - 1])))
    return names, owned


def _two_managers(prefixes: Iterable[str], unread: list[str]) -> list[Finding]:
    """A package conda installed that pip has written over (or beside) in one prefix."""
    findings = []
    for prefix in prefixes:
        if not Path(prefix, "conda-meta").is_dir():
            continue
        conda, owned = _conda_names(prefix, unread)
        for site_dir in _site_dirs(prefix):
            for dist in _dists(site_dir, unread):
                conda_name = conda.get(user_layer.canonical(dist.name))
                if dist.installer != "pip" or conda_name is None or dist.path in owned:
                    continue
                findings.append(
                    Finding(
                        TWO_MANAGERS,
                        dist.name,
                        dist.path,
                        f"conda installed {conda_name} in {prefix} and pip installed "
                        f"{dist.name} {dist.version} over it: which one loads depends on "
                        "what was written last",
                        f"in {prefix}: pip uninstall {dist.name}, then conda install "
                        f"--force-reinstall {conda_name} (one package manager per "
                        "environment)",
                    )
                )
    return findings


def _stale_layers(home: str, current: str | None) -> list[Finding]:
    """Layers of earlier images whose packages were not brought over to this one
    (user_layer's reading of what pip recorded as asked for)."""
    root = Path(home, user_layer.LAYERS_IN_HOME)
    markers = [
        str(found)
        for marker in user_layer.MARKERS
        for found in root.glob(f"*/lib/python*/site-packages/*.dist-info/{marker}")
    ]
    others = user_layer.other_layers(markers, current or "")
    findings = []
    for layer in sorted({*others.reinstall, *others.by_hand}):
        again = others.reinstall.get(layer, [])
        by_hand = others.by_hand.get(layer, [])
        fix = "run pip-reinstall in the workspace" if again else ""
        if by_hand:
            fix += ("; " if fix else "") + (
                f"install {', '.join(by_hand)} again the way you did (from a path or URL)"
            )
        findings.append(
            Finding(
                STALE_LAYER,
                ", ".join(sorted([*again, *by_hand])),
                str(root / layer),
                f"the layer of another image ({layer}) is not on the path of this one "
                f"({current or 'no layer'}); these packages are not installed for it",
                fix + "; the old layer stays on disk until you remove it",
            )
        )
    return findings


def _image_dists(places: _Places, unread: list[str]) -> dict[str, _Dist]:
    return {
        user_layer.canonical(dist.name): dist
        for site_dir in places.image
        for dist in _dists(site_dir, unread)
    }


def inspect_drift(environ: Mapping[str, str] = os.environ) -> Report:
    """This workspace's drift, for the user running this interpreter: its sys.path and
    import system as the user's start (PYTHONPATH, the layer's .pth files) made them."""
    places = _Places.of_this_python(environ)
    unread: list[str] = []
    if not places.home or places.home == "/":
        unread.append("HOME is not set: the user's layers and environments cannot be found")
    image = _image_dists(places, unread)
    if not image:
        unread.append(f"no packages found in the image's {', '.join(places.image)}")
    user_entries = _user_entries(places, sys.path)
    layer = places.layer_prefix()
    layer_dirs = (
        [user_layer.site_packages(layer, user_layer.python_minor())]
        + [d for env in sorted(Path(layer, "envs").glob("*")) for d in _site_dirs(str(env))]
        if layer
        else []
    )
    environments = _environments_in(places.home, unread)
    user_site = f"{places.home}/.local/lib/python{user_layer.python_minor()}/site-packages"
    on_path = {os.path.realpath(entry) for entry in user_entries}
    reach = [
        *((entry, f"{entry} (on sys.path)") for entry in user_entries),
        *((d, f"your layer {d}") for d in layer_dirs if os.path.realpath(d) not in on_path),
        (user_site, f"your user site {user_site} (pip install --user)"),
        *((d, f"the environment {env}") for env in environments for d in _site_dirs(env)),
    ]
    shadowed = _shadowed(places, image, environ, unread)
    torch = image.get("torch")
    findings = [
        *shadowed,
        *_replaced(reach, image, {f.package for f in shadowed}, unread),
        *_other_builds(
            layer_dirs, torch.version if torch else None, user_layer.image_cuda_build(), unread
        ),
        *_two_managers([sys.prefix, *environments], unread),
        *(_stale_layers(places.home, places.layer) if places.home else []),
    ]
    return Report(places.home, places.layer, tuple(findings), tuple(dict.fromkeys(unread)))


# --- sent to a workspace ----------------------------------------------------------------

MODULE = "gpuprov_drift"
LAYER_MODULE = "gpuprov_user_layer"


def program() -> str:
    """The Python program for ``python3 -`` inside a workspace: this module and user_layer
    (compressed), loaded as modules, then the inspection, which prints its report as one
    JSON line. It holds no single quote, so a shell can carry it in one."""
    sources = {
        LAYER_MODULE: Path(user_layer.__file__).read_text(encoding="utf-8"),
        MODULE: Path(__file__).read_text(encoding="utf-8"),
    }
    blob = base64.b64encode(zlib.compress(json.dumps(sources).encode(), 9)).decode()
    return (
        "import base64, json, sys, types, zlib\n"
        f'sources = json.loads(zlib.decompress(base64.b64decode("{blob}")))\n'
        "for name, source in sources.items():\n"
        "    module = sys.modules[name] = types.ModuleType(name)\n"
        '    exec(compile(source, name + ".py", "exec"), module.__dict__)\n'
        f'sys.exit(sys.modules["{MODULE}"].main())\n'
    )


def main() -> int:
    print(json.dumps(inspect_drift().to_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
