"""The user's package layer: what `pip install` does inside a workspace.

A user's own packages land in a layer on their home volume, one per image ABI
(``~/.local/gpuprov/py3.11-torch2.7.1-cu126``), which Python puts *behind* the team
image's environment: the team's packages always import from the image, the user's
from the layer, and pip, under a constraints file the image generated from its own
resolved set, can never replace one of the team's packages. A new image has another
ABI, so packages built against the old one never load under it; the old layer stays
on disk (gpuprov never deletes user data) and `pip-reinstall` brings its packages
over under the new constraints.

The image carries this file alone, as ``gpuprov_layer``: it imports nothing from
gpuprov and only the standard library. Run as a script it prepares an image
(``prepare-image``) and is the `pip` and `pip-reinstall` commands users type.
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Where the image keeps the layer's files (tests point GPUPROV_IMAGE_DIR at a scratch
# directory), and where layers live in a home.
IMAGE_DIR = os.environ.get("GPUPROV_IMAGE_DIR", "/opt/gpuprov")
CONSTRAINTS = f"{IMAGE_DIR}/constraints.txt"
ABI_FILE = f"{IMAGE_DIR}/layer"
COMMANDS_DIR = f"{IMAGE_DIR}/bin"
LAYERS_IN_HOME = ".local/gpuprov"
MODULE = "gpuprov_layer"
PTH = "gpuprov-layer.pth"

ASK = "ask for a new pin of the team image instead"


def layer_name(python: str, torch: str | None, cuda_build: str | None = None) -> str:
    """The ABI a layer is keyed by: 'py3.11-torch2.7.1-cu126'.

    torch's local version names its build ('2.7.1+cu126'); a conda torch has none,
    so the image's CUDA build is given. An image without torch is keyed by Python.
    """
    python = ".".join(python.split(".")[:2])
    if not torch:
        return f"py{python}"
    version, _, local = torch.partition("+")
    build = local or cuda_build
    return f"py{python}-torch{version}" + (f"-{build}" if build else "")


def layer_prefix(home: str, name: str) -> str:
    """The layer's install prefix (pip --prefix) in the user's home."""
    return f"{home.rstrip('/')}/{LAYERS_IN_HOME}/{name}"


def site_packages(prefix: str, python: str) -> str:
    """Where pip --prefix puts packages for ``python`` ('3.11')."""
    return f"{prefix}/lib/python{python}/site-packages"


def python_minor() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the constraints file -------------------------------------------------------


def constraints_text(distributions: Iterable[tuple[str, str]], image: str) -> str:
    """Every distribution of the image pinned to the version it holds."""
    pins = sorted({canonical(name): (name, version) for name, version in distributions}.values())
    header = [
        f"# The team image's packages ({image}), generated from what it holds when it was built.",
        "# pip in a workspace applies this file: a user's layer may add packages, never",
        f"# replace one of these; {ASK}.",
    ]
    return "\n".join([*header, *(f"{name}=={version}" for name, version in pins)]) + "\n"


def read_pins(text: str) -> dict[str, tuple[str, str]]:
    """The constraints file's pins, by canonical name: (name as written, version)."""
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[canonical(name.strip())] = (name.strip(), version.strip())
    return pins


# --- judging what a user asks pip for --------------------------------------------

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*"
    r"(?P<spec>(?:[<>=!~]=?=?\s*[^,;\s]+\s*,?\s*)*)(?:;.*)?$"
)
_CLAUSE = re.compile(r"(===|==|!=|~=|>=|<=|>|<)\s*([^,\s]+)")


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version ('2.7.1+cu126' -> (2, 7, 1)); pre/post/dev parts
    are outside what a user asks of the team's pins."""
    numbers = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(n) for n in numbers.group(1).split(".")) if numbers else ()


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def _satisfies(version: str, operator: str, wanted: str) -> bool:
    """Whether ``version`` meets one PEP 440 clause, as far as release numbers tell."""
    if operator == "===":
        return version.lower() == wanted.lower()
    if operator not in ("==", "!="):
        have, want = _padded(_release(version), _release(wanted))
        if operator == "~=":
            stem = _release(wanted)[:-1]
            return have >= want and _release(version)[: len(stem)] == stem
        return {">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want}[
            operator
        ]
    if wanted.endswith(".*"):
        stem = _release(wanted[:-2])
        equal = _release(version)[: len(stem)] == stem
    elif "+" in wanted:
        equal = version.lower() == wanted.lower()
    else:
        have, want = _padded(_release(version), _release(wanted))
        equal = have == want
    return equal if operator == "==" else not equal


@dataclass(frozen=True)
class Refusal:
    """A requirement that would replace one of the team image's packages."""

    requirement: str
    name: str
    held: str

    def message(self) -> str:
        return (
            f"{self.name} {self.held} is part of the team image; '{self.requirement}' would "
            f"replace it, and a workspace never does: {ASK} (your layer keeps its other "
            "packages)."
        )


def judge(requirement: str, pins: Mapping[str, tuple[str, str]]) -> Refusal | None:
    """A refusal when the requirement names a team package at a version it does not hold."""
    parsed = _REQUIREMENT.match(requirement)
    # A requirement with an environment marker is pip's to evaluate, under the constraints.
    if not parsed or ";" in requirement or canonical(parsed["name"]) not in pins:
        return None
    name, held = pins[canonical(parsed["name"])]
    clauses = _CLAUSE.findall(parsed["spec"] or "")
    if all(_satisfies(held, operator, wanted) for operator, wanted in clauses):
        return None
    return Refusal(requirement.strip(), name, held)


def _requirement_files(args: Sequence[str]) -> list[str]:
    files = []
    for index, arg in enumerate(args):
        if arg in ("-r", "--requirement") and index + 1 < len(args):
            files.append(args[index + 1])
        elif arg.startswith("--requirement="):
            files.append(arg.partition("=")[2])
        elif arg.startswith("-r") and len(arg) > 2:
            files.append(arg[2:])
    return files


# pip install options that take a value: the word after them is not a requirement.
_VALUED = {
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t", "--target",
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--prefix", "--root",
    "--platform", "--python-version", "--implementation", "--abi", "--src",
    "--upgrade-strategy", "--progress-bar", "--report", "--config-settings", "-C",
    "--global-option", "--no-binary", "--only-binary", "--trusted-host", "--cache-dir",
    "--log", "--proxy", "--retries", "--timeout", "--exists-action", "--cert",
    "--client-cert", "--python", "--root-user-action",
}  # fmt: skip


def requested(args: Sequence[str]) -> list[str]:
    """The requirements a `pip install` command line names, files included."""
    words = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-") and not re.match(r"^[./~]|.*://|.*\.(whl|zip|tar\.gz)$", arg):
            words.append(arg)
    for name in _requirement_files(args):
        try:
            lines = Path(name).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError:
            continue  # pip says it cannot open it
        joined = re.sub(r"\\\n", " ", "\n".join(lines))
        for line in joined.splitlines():
            line = line.split("#")[0].strip()
            if line and line[0] != "-":
                words.append(re.split(r"\s+-", line)[0])
    return words


def refusals(args: Sequence[str], pins: Mapping[str, tuple[str, str]]) -> list[Refusal]:
    """What a `pip install` would replace of the team image (empty for other commands)."""
    if _subcommand(args) != "install":
        return []
    after = list(args[list(args).index("install") + 1 :])
    return [found for req in requested(after) if (found := judge(req, pins)) is not None]


def _subcommand(args: Sequence[str]) -> str | None:
    """pip's command: its first word that is not an option."""
    return next((a for a in args if not a.startswith("-")), None)


# --- in the image ----------------------------------------------------------------


def image_layer_name() -> str | None:
    """This image's layer ABI, as prepare-image recorded it."""
    try:
        return Path(ABI_FILE).read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _prefix(environ: Mapping[str, str]) -> str | None:
    """The prefix pip installs into and Python reads: the user's layer for this image,
    or a personal environment in it when GPUPROV_ENV names one."""
    home, name = environ.get("HOME"), image_layer_name()
    if not home or not name or home == "/":
        return None
    layer = layer_prefix(home, name)
    personal = environ.get(ENV_VAR)
    return env_prefix(layer, personal) if personal and valid_env_name(personal) else layer


def activate(environ: Mapping[str, str] = os.environ) -> str | None:
    """Put the user's layer (or personal environment) for this image behind the image's
    own packages.

    Run at every interpreter start by the image's gpuprov-layer.pth, which site
    processes after the environment's site-packages is on sys.path, so appending
    keeps the team's packages first. Returns the directory added.
    """
    prefix = _prefix(environ)
    if prefix is None:
        return None
    where = site_packages(prefix, python_minor())
    before = list(sys.path)
    site.addsitedir(where)
    # A .pth file in the layer may insert paths anywhere: what was there comes first again.
    sys.path[:] = before + [path for path in sys.path if path not in before]
    _route_pip(environ)
    return where


GUARDED = "GPUPROV_PIP_GUARDED"


def _route_pip(environ: Mapping[str, str]) -> None:
    """`python -m pip` (and so `%pip` in a notebook) goes through run_pip like the `pip`
    command: the interpreter is replaced, before pip starts, by `-m gpuprov_layer pip`."""
    argv = getattr(sys, "orig_argv", [])
    if environ.get(GUARDED) or "-m" not in argv[1:]:
        return
    at = argv.index("-m", 1)
    if argv[at + 1 : at + 2] == ["pip"]:
        os.execv(
            sys.executable, [sys.executable, *argv[1:at], "-m", MODULE, "pip", *argv[at + 2 :]]
        )


def pip_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """pip's environment in a workspace: installs into the layer (or the personal
    environment GPUPROV_ENV names), under the constraints."""
    env = {**environ, GUARDED: "1"}
    prefix = _prefix(environ)
    if prefix:
        env["PIP_PREFIX"] = prefix
    if Path(CONSTRAINTS).is_file():
        env["PIP_CONSTRAINT"] = " ".join(
            dict.fromkeys([CONSTRAINTS, *env.get("PIP_CONSTRAINT", "").split()])
        )
    return env


# --- personal environments ------------------------------------------------------------
# A user who needs another set of packages for one project keeps it in a named
# environment inside their layer: the team's stack under it, the same constraints,
# a Jupyter kernel of its own, and `gpuprov-env shell NAME` over SSH.

ENV_VAR = "GPUPROV_ENV"
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def valid_env_name(name: str) -> bool:
    return bool(_ENV_NAME.match(name))


def env_prefix(layer: str, name: str) -> str:
    return f"{layer}/envs/{name}"


def kernel_spec(name: str, python: str) -> dict[str, object]:
    """The Jupyter kernel of a personal environment: the image's Python, told which
    environment to read and install into."""
    return {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({name}, on the team image)",
        "language": "python",
        # The environment's place follows the image the kernel starts on (its layer), so
        # only its name is written here.
        "env": {ENV_VAR: name},
        "metadata": {"gpuprov": {"environment": name}},
    }


def personal_env(args: Sequence[str]) -> int:
    """`gpuprov-env create NAME` | `gpuprov-env shell NAME` | `gpuprov-env list`."""
    home, layer_name_ = os.environ.get("HOME", ""), image_layer_name()
    if not home or not layer_name_:
        print("gpuprov-env: not in a gpuprov workspace (no HOME or no layer)", file=sys.stderr)
        return 1
    layer = layer_prefix(home, layer_name_)
    if args[:1] == ["list"]:
        for found in sorted(Path(env_prefix(layer, "")).glob("*")):
            print(found.name)
        return 0
    if len(args) != 2 or args[0] not in ("create", "shell") or not valid_env_name(args[1]):
        print(
            "usage: gpuprov-env create NAME | shell NAME | list (NAME: letters, digits, - and _)",
            file=sys.stderr,
        )
        return 2
    name = args[1]
    prefix = env_prefix(layer, name)
    if args[0] == "create":
        Path(site_packages(prefix, python_minor())).mkdir(parents=True, exist_ok=True)
        kernel = Path(home) / ".local/share/jupyter/kernels" / f"gpuprov-{name}"
        kernel.mkdir(parents=True, exist_ok=True)
        spec = kernel_spec(name, sys.executable)
        (kernel / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
        print(
            f"gpuprov-env: {name} in {prefix}; Jupyter lists it as '{spec['display_name']}', "
            f"over SSH: gpuprov-env shell {name}"
        )
        return 0
    if not Path(prefix).is_dir():
        print(f"gpuprov-env: no environment {name}: gpuprov-env create {name}", file=sys.stderr)
        return 1
    shell = os.environ.get("SHELL") or "/bin/sh"
    path = f"{os.environ.get('PATH', '')}:{prefix}/bin"
    os.execvpe(shell, [shell], {**os.environ, ENV_VAR: name, "PATH": path})


# How wheels built against one torch name it in their local version: '+pt25cu124'
# (PyG), '+cu12torch2.6cxx11abiFALSE' (flash-attn), '+cu121' (a CUDA build alone).
_TORCH_TAG = re.compile(r"(?:^|[.+_]|cu\d+)(?:pt(\d)(\d+)|torch(\d+)\.(\d+))", re.IGNORECASE)
_CUDA_TAG = re.compile(r"(?:^|[.+_]|\d)(cu\d+|cpu)", re.IGNORECASE)


def _same_cuda(tag: str, build: str) -> bool:
    """'cu12' (a major) matches 'cu126'; 'cu124' only itself."""
    tag, build = tag.lower(), build.lower()
    if tag == "cpu" or build == "cpu":
        return tag == build
    return build.startswith(tag) if len(tag) <= 4 else tag == build


def built_for_another_torch(version: str, torch: str, cuda_build: str | None = None) -> str | None:
    """Why a package whose version names the torch or CUDA it was built for (the
    torch-scatter kind: '2.1.2+pt25cu124') cannot load in an image holding ``torch``
    ('2.7.1+cu126'; a conda torch names no build, so the image's ``cuda_build`` is
    given), or None. An untagged version says nothing, so it passes."""
    local = version.partition("+")[2]
    if not local:
        return None
    release, _, build = torch.partition("+")
    build = build or cuda_build or ""
    minor = ".".join(release.split(".")[:2])
    tagged = _TORCH_TAG.search(local)
    if tagged:
        wants = f"{tagged[1]}.{tagged[2]}" if tagged[1] else f"{tagged[3]}.{tagged[4]}"
        if wants != minor:
            return f"it was built for torch {wants}, the image holds {torch}"
    cuda = _CUDA_TAG.search(local)
    if cuda and build and not _same_cuda(cuda[1], build):
        return f"it was built for {cuda[1]}, the image's torch is {torch} ({build})"
    return None


def image_cuda_build() -> str | None:
    """The CUDA build this image's layer is keyed by ('cu126', 'cpu'), if any."""
    name = image_layer_name() or ""
    found = re.search(r"-(cu\d+|cpu)$", name)
    return found[1] if found else None


def _layer_dists(environ: Mapping[str, str]) -> dict[str, dict[str, Path]]:
    """The distributions in the layer: by name, each version with its dist-info folder."""
    prefix = environ.get("PIP_PREFIX")
    found: dict[str, dict[str, Path]] = {}
    if not prefix:
        return found
    site_dir = Path(site_packages(prefix, python_minor()))
    for folder in sorted(site_dir.glob("*.dist-info")):
        dist = metadata.PathDistribution(folder)
        found.setdefault(canonical(dist.metadata["Name"] or ""), {})[dist.version] = folder
    return found


def _layer_versions(environ: Mapping[str, str]) -> dict[str, str]:
    """The distributions in the layer and their newest-installed version."""
    return {
        name: max(versions, key=lambda v: versions[v].stat().st_mtime)
        for name, versions in _layer_dists(environ).items()
    }


def _drop_replaced(prefix: str, before: Mapping[str, Mapping[str, Path]]) -> None:
    """An upgrade inside the layer: pip leaves the old version there (it removes nothing
    outside its environment), so its files that the new one did not rewrite go, then its
    dist-info."""
    for name, versions in _layer_dists({"PIP_PREFIX": prefix}).items():
        new = [v for v in versions if v not in before.get(name, {})]
        if not new:
            continue
        keep = {Path(str(f)) for f in metadata.PathDistribution(versions[new[0]]).files or ()}
        for version, folder in versions.items():
            if version in new:
                continue
            old = metadata.PathDistribution(folder)
            site_dir = folder.parent
            for path in old.files or ():
                if Path(str(path)) not in keep and Path(str(path)).parts[0] != folder.name:
                    target = (site_dir / str(path)).resolve()
                    if Path(prefix).resolve() in target.parents and target.is_file():
                        target.unlink()
            for leftover in sorted(folder.rglob("*"), reverse=True):
                leftover.unlink() if leftover.is_file() else leftover.rmdir()
            folder.rmdir()


def remove_from_layer(prefix: str, names: Iterable[str]) -> list[str]:
    """Uninstall distributions from the layer by their RECORD, as pip would: pip itself
    leaves alone what lies outside the environment it runs in, and the layer does.
    Only files inside the layer are touched. Returns the names removed."""
    where = Path(site_packages(prefix, python_minor()))
    root = Path(prefix).resolve()
    wanted = {canonical(name) for name in names}
    removed = []
    for dist in metadata.distributions(path=[str(where)]):
        name = dist.metadata["Name"] or ""
        if canonical(name) not in wanted:
            continue
        paths = [Path(str(dist.locate_file(f))).resolve() for f in dist.files or ()]
        for path in sorted(p for p in paths if root in p.parents and p.is_file()):
            path.unlink()
        for folder in sorted({p.parent for p in paths}, key=lambda p: -len(p.parts)):
            if root in folder.parents and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        removed.append(name)
    return removed


def _uninstall(args: Sequence[str], env: Mapping[str, str], pins: Mapping[str, tuple]) -> int:
    """`pip uninstall`: the layer's packages by gpuprov; the image's never."""
    names = [a for a in args if not a.startswith("-")]
    team = [pins[canonical(n)] for n in names if canonical(n) in pins]
    for name, held in team:
        print(f"gpuprov: {name} {held} is part of the team image; a workspace never removes it: "
              f"{ASK}.", file=sys.stderr)  # fmt: skip
    if team:
        return 1
    removed = remove_from_layer(env.get("PIP_PREFIX", ""), names) if env.get("PIP_PREFIX") else []
    for name in removed:
        print(f"Successfully uninstalled {name} from your layer")
    missing = [n for n in names if canonical(n) not in {canonical(r) for r in removed}]
    for name in missing:
        print(f"gpuprov: {name} is not in your layer", file=sys.stderr)
    return 1 if missing else 0


def run_pip(args: Sequence[str]) -> int:
    """`pip` as a user types it: refused when it would replace a team package; a package
    built for another torch or CUDA than the image's is taken out again."""
    try:
        pins = read_pins(Path(CONSTRAINTS).read_text(encoding="utf-8"))
    except OSError:
        pins = {}
    refused = refusals(args, pins)
    for refusal in refused:
        print(f"gpuprov: {refusal.message()}", file=sys.stderr)
    if refused:
        return 1
    env = pip_environment(os.environ)
    command = _subcommand(args)
    if command == "uninstall":
        return _uninstall(args[list(args).index("uninstall") + 1 :], env, pins)
    if command == "install" and "--user" in args:
        print("gpuprov: --user left out: pip installs into your layer anyway", file=sys.stderr)
        args = [a for a in args if a != "--user"]
    if command == "install" and set(args) & {"--target", "-t", "--prefix", "--root"}:
        env.pop("PIP_PREFIX", None)  # the user said where
    before = _layer_dists(env)
    done = subprocess.run([sys.executable, "-m", "pip", *args], env=env, check=False).returncode
    if command != "install" or "PIP_PREFIX" not in env:
        return done
    _drop_replaced(env["PIP_PREFIX"], before)
    torch = pins.get("torch", ("", ""))[1]
    if not torch:
        return done
    wrong = {
        name: why
        for name, version in _layer_versions(env).items()
        if version not in before.get(name, {})
        and (why := built_for_another_torch(version, torch, image_cuda_build()))
    }
    for name, why in sorted(wrong.items()):
        print(
            f"gpuprov: {name} was removed from your layer: {why}; install the build made for "
            f"torch {torch} instead",
            file=sys.stderr,
        )
    if wrong:
        remove_from_layer(env["PIP_PREFIX"], wrong)
        return 1
    return done


def _layer_and_package(marker: str) -> tuple[str, str] | None:
    """(layer, package) from the path of a REQUESTED marker in a home's layers:
    ``.../.local/gpuprov/<layer>/lib/python3.11/site-packages/<name>-<version>.dist-info/REQUESTED``."""
    parts = Path(marker).parts
    for index in range(len(parts) - 1):
        # <layer>/lib/<python>/site-packages/<dist-info>/REQUESTED: a layer's own, not
        # one of its personal environments'.
        if "/".join(parts[index : index + 2]) == LAYERS_IN_HOME and len(parts) == index + 8:
            dist_info = parts[-2]
            if dist_info.endswith(".dist-info"):
                return parts[index + 2], dist_info.removesuffix(".dist-info").rsplit("-", 1)[0]
    return None


@dataclass(frozen=True)
class OtherLayers:
    """What a user asked pip for in their layers of other images, by layer: what
    pip-reinstall brings over, and what came from a path or URL (an editable project, a
    git checkout, a wheel file), which only the user can install again."""

    reinstall: dict[str, list[str]]
    by_hand: dict[str, list[str]]


MARKERS = ("REQUESTED", "direct_url.json")


def other_layers(markers: Iterable[str], current: str) -> OtherLayers:
    """From the REQUESTED and direct_url.json files pip leaves in a home's layers (the
    packages' dependencies follow on their own); a package the current layer already
    has is not listed again."""
    asked: dict[str, tuple[str, str]] = {}
    from_url: set[str] = set()
    for marker in markers:
        found = _layer_and_package(marker)
        if found is None:
            continue
        dist_info = str(Path(marker).parent)
        if marker.endswith("direct_url.json"):
            from_url.add(dist_info)
        else:
            asked[dist_info] = found
    have = {canonical(package) for layer, package in asked.values() if layer == current}
    result = OtherLayers({}, {})
    for dist_info, (layer, package) in sorted(asked.items(), key=lambda item: item[1]):
        if layer == current or canonical(package) in have:
            continue
        where = result.by_hand if dist_info in from_url else result.reinstall
        where.setdefault(layer, []).append(package)
    return result


def reinstall_note(markers: Iterable[str], current: str, home: str = "") -> str:
    """What a user's connection note says of their packages; ``markers`` under ``home``
    (the user's home on the host) are theirs."""
    mine = [m for m in markers if m.startswith(home.rstrip("/") + "/")] if home else markers
    others = other_layers(mine, current)
    lines = [f"Your packages: pip install adds to ~/{LAYERS_IN_HOME}/{current} (behind the team's)"]
    for layer, packages in others.reinstall.items():
        lines.append(f"  installed for another image ({layer}): {', '.join(packages)}")
    if others.reinstall:
        lines.append("  run pip-reinstall in a workspace to install them for this image")
    for layer, packages in others.by_hand.items():
        lines.append(
            f"  installed from a path or URL for another image ({layer}): {', '.join(packages)}"
            " (install them again the way you did)"
        )
    return "\n".join(lines) + "\n"


def reinstall(args: Sequence[str]) -> int:
    """`pip-reinstall`: the packages asked for in the user's other layers, installed into
    this image's layer under its constraints (pip options pass through)."""
    home, name = os.environ.get("HOME", ""), image_layer_name() or ""
    root = Path(home) / LAYERS_IN_HOME
    markers = [
        str(found)
        for marker in MARKERS
        for found in (
            root.glob(f"*/lib/python*/site-packages/*.dist-info/{marker}") if home else ()
        )
    ]
    others = other_layers(markers, name)
    for layer, packages in others.by_hand.items():
        print(
            f"gpuprov: from a path or URL in {layer}, install again yourself: {' '.join(packages)}"
        )
    wanted = sorted({package for packages in others.reinstall.values() for package in packages})
    if not wanted:
        print(f"gpuprov: nothing to reinstall into {name}")
        return 0
    print(f"gpuprov: reinstalling into {name}: {' '.join(wanted)}")
    return run_pip(["install", *args, *wanted])


def conda_pinned(records: Iterable[Path]) -> str:
    """conda's pinned file for a conda image: every package it holds at its version, so
    no conda or micromamba solve in it replaces one (pip there runs under the
    constraints, like in a pip image)."""
    pins = []
    for record in records:
        package = json.loads(record.read_text(encoding="utf-8"))
        pins.append(f"{package['name']} =={package['version']}")
    return "\n".join(sorted(pins)) + "\n"


def prepare_image(cuda_build: str | None, image: str) -> dict[str, str]:
    """Make the running environment (the image's /opt/venv or /opt/conda) layer-aware:
    record its ABI, pin its packages, put this module and its .pth in its
    site-packages, the `pip` commands in COMMANDS_DIR (first on the image's PATH), and
    JupyterLab quiet: no news prompt, no update checks (hosts are often air-gapped).
    Returns what it wrote."""
    distributions = [(d.metadata["Name"], d.version) for d in metadata.distributions()]
    torch = next((v for n, v in distributions if canonical(n) == "torch"), None)
    purelib = Path(sysconfig.get_paths()["purelib"])
    quiet = {"checkForUpdates": False, "fetchNews": "false"}
    written = {
        ABI_FILE: layer_name(python_minor(), torch, cuda_build) + "\n",
        CONSTRAINTS: constraints_text(distributions, image),
        str(purelib / f"{MODULE}.py"): Path(__file__).read_text(encoding="utf-8"),
        str(purelib / PTH): f"import {MODULE}; {MODULE}.activate()\n",
        f"{sys.prefix}/share/jupyter/lab/settings/overrides.json": json.dumps(
            {"@jupyterlab/apputils-extension:notification": quiet}, indent=2
        )
        + "\n",
    }
    conda_meta = Path(sys.prefix) / "conda-meta"
    if conda_meta.is_dir():
        written[str(conda_meta / "pinned")] = conda_pinned(conda_meta.glob("*.json"))
    for command, verb in [(c, "pip") for c in ("pip", "pip3", f"pip{python_minor()}")] + [
        ("pip-reinstall", "reinstall"),
        ("gpuprov-env", "env"),
    ]:
        written[f"{COMMANDS_DIR}/{command}"] = (
            f'#!/bin/sh\nexec {sys.executable} -m {MODULE} {verb} "$@"\n'
        )
    for path, text in written.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
        Path(path).chmod(0o755 if path.startswith(COMMANDS_DIR) else 0o644)
    return written


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["pip"]:
        return run_pip(argv[1:])
    if argv[:1] == ["reinstall"]:
        return reinstall(argv[1:])
    if argv[:1] == ["env"]:
        return personal_env(argv[1:])
    if argv[:1] == ["prepare-image"] and len(argv) == 3:
        prepare_image(argv[1] or None, argv[2])
        return 0
    print(
        "usage: gpuprov_layer pip ARGS... | reinstall [PIP OPTIONS] | "
        "prepare-image CUDA_BUILD IMAGE",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
