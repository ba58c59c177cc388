"""Judge a team image: its packages (from gpuprov's inspector), labels and CUDA against the pin.

The image must hold ONE install of each package, torch/torchvision/torchaudio from one
manager and one CUDA build, in a released pairing, matching what the pin promises and
what the image's labels say. A CPU flavour (pin cuda 'none') must carry no CUDA build.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from .labels import IMAGE_LABELS, PROMISE_KEYS
from .torch_matrix import (
    CPU_BUILD,
    RELEASES,
    TORCH_FAMILY,
    build_for_cuda_version,
    cuda_build_of,
    cuda_build_of_conda,
    cuda_version_of_build,
    minor_of,
    no_cuda,
    public_version,
    release_for,
)

INSPECTOR_SCHEMA = "gpuprov.inspector/1"

FAIL = "fail"
WARN = "warn"

# conda package names whose Python distribution has another name; used only when a
# conda record does not list its files.
_CONDA_TO_DIST = {"pytorch": "torch"}
_CUDNN_PACKAGES = ("cudnn", "nvidia-cudnn-cu11", "nvidia-cudnn-cu12", "nvidia-cudnn-cu13")
_META_DIR = re.compile(r"^(?P<name>[^-]+)-[^/]+\.(?:dist|egg)-info$")


class AuditInputError(ValueError):
    """The inspector output or the pin cannot be audited as given."""


@dataclass(frozen=True)
class PackageRow:
    """One install of one package in one environment of the image."""

    environment: str
    name: str
    version: str | None
    manager: str
    cuda_build: str | None
    source: str | None
    path: str


@dataclass(frozen=True)
class Finding:
    severity: str  # FAIL or WARN
    message: str


@dataclass(frozen=True)
class AuditReport:
    reference: str | None
    digest: str | None
    rows: tuple[PackageRow, ...]
    findings: tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return not any(f.severity == FAIL for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "passed": self.passed,
            "rows": [asdict(r) for r in self.rows],
            "findings": [asdict(f) for f in self.findings],
        }


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _matches(promise: str, actual: str | None) -> bool:
    """'2.7.1' matches '2.7.1+cu126'; '3.11' matches '3.11.9'; a local tag must match."""
    if actual is None:
        return False
    if "+" not in promise:
        actual = public_version(actual)
    want, have = promise.strip().split("."), actual.strip().split(".")
    return have[: len(want)] == want


# --- reading the inspector's records ---------------------------------------------------


def _row_from_conda(env: str, record: Mapping) -> PackageRow:
    build = record.get("build") or ""
    return PackageRow(
        environment=env,
        name="",
        version=record.get("version"),
        manager="conda",
        cuda_build=cuda_build_of_conda(build) if build else None,
        source=record.get("channel") or record.get("url"),
        path=str(record.get("path")),
    )


def _row_from_dist(env: str, record: Mapping) -> PackageRow:
    version = record.get("version")
    build = cuda_build_of(version) if version else None
    if build is None and record.get("cuda_runtime"):
        build = build_for_cuda_version(str(record["cuda_runtime"]))
    return PackageRow(
        environment=env,
        name=str(record.get("name")),
        version=version,
        manager=str(record.get("installer") or "unknown"),
        cuda_build=build,
        source=record.get("source"),
        path=str(record.get("path")),
    )


def _conda_dist_names(record: Mapping) -> list[str] | None:
    dists = record.get("python_dists")
    if not isinstance(dists, list):
        return None
    names = []
    for dist in dists:
        match = _META_DIR.match(str(dist).rsplit("/", 1)[-1])
        if match:
            names.append(_norm(match.group("name")))
    return names


def _environment_installs(env: Mapping, findings: list[Finding]) -> dict[str, list[PackageRow]]:
    """Every install in one environment, keyed by normalised distribution name.

    A conda package and the dist-info it ships are ONE install; a dist-info that no
    conda record owns is a separate install, whoever wrote it.
    """
    prefix = str(env.get("prefix"))
    records = env.get("records")
    if not isinstance(records, list):
        raise AuditInputError(f"environment {prefix} has no 'records' list: rerun the inspector")
    installs: dict[str, list[PackageRow]] = {}
    unlisted_conda: dict[str, PackageRow] = {}
    for record in records:
        if not isinstance(record, Mapping):
            raise AuditInputError(f"environment {prefix} has a record that is not an object")
        if record.get("error"):
            findings.append(_unreadable(prefix, record))
        if not record.get("name"):
            continue
        if record.get("kind") == "conda-meta":
            row = _row_from_conda(prefix, record)
            names = _conda_dist_names(record)
            if names is None:
                name = _CONDA_TO_DIST.get(str(record["name"]), str(record["name"]))
                unlisted_conda[name] = row
                names = [name]
            for name in names or [str(record["name"])]:
                installs.setdefault(name, []).append(_named(row, name))
    for record in records:
        if record.get("kind") not in ("dist-info", "egg-info") or not record.get("name"):
            continue
        if record.get("conda_package"):
            continue
        row = _row_from_dist(prefix, record)
        if row.manager == "conda" and row.name in unlisted_conda:
            continue
        installs.setdefault(row.name, []).append(row)
    return installs


def _named(row: PackageRow, name: str) -> PackageRow:
    return PackageRow(
        row.environment, name, row.version, row.manager, row.cuda_build, row.source, row.path
    )


def _unreadable(prefix: str, record: Mapping) -> Finding:
    name = record.get("name")
    severity = FAIL if name in TORCH_FAMILY else WARN
    return Finding(
        severity,
        f"{prefix}: could not read {record.get('path')} ({record.get('error')}); "
        f"reinstall {name or 'that package'} so its metadata is whole",
    )


# --- rules -----------------------------------------------------------------------------


def _describe(row: PackageRow) -> str:
    where = f" from {row.source}" if row.source else ""
    return f"{row.manager} {row.version}{where} ({row.path})"


def _check_duplicates(installs: Mapping[str, list[PackageRow]], findings: list[Finding]) -> None:
    for name, rows in sorted(installs.items()):
        if len(rows) < 2:
            continue
        managers = sorted({r.manager for r in rows})
        fix = (
            "uninstall the pip copy and reinstall it with conda, or rebuild the image with "
            "one package manager"
            if "conda" in managers and len(managers) > 1
            else f"remove the extra copies (pip uninstall {name} until none is left, then "
            "install it once)"
        )
        findings.append(
            Finding(
                FAIL,
                f"{name} is installed {len(rows)} times in {rows[0].environment}: "
                + "; ".join(_describe(r) for r in rows)
                + f". The one imported is whichever was written last: {fix}.",
            )
        )


def _check_family(
    env: str,
    family: Mapping[str, list[PackageRow]],
    cpu_image: bool,
    cuda_promise: str | None,
    cuda_env: str | None,
    findings: list[Finding],
) -> None:
    rows = [r for name in TORCH_FAMILY for r in family.get(name, [])]
    managers = {r.manager for r in rows}
    if len(managers) > 1:
        findings.append(
            Finding(
                FAIL,
                f"{env}: torch, torchvision and torchaudio come from different managers ("
                + ", ".join(f"{r.name} by {r.manager}" for r in rows)
                + "); mixed installs break at import with undefined symbols / C++ ABI "
                "errors: install all three with one manager",
            )
        )
    builds = {r.cuda_build for r in rows if r.cuda_build}
    if len(builds) > 1:
        findings.append(
            Finding(
                FAIL,
                f"{env}: the torch family mixes CUDA builds ("
                + ", ".join(f"{r.name} {r.cuda_build}" for r in rows if r.cuda_build)
                + "); install all three from one index, e.g. "
                "https://download.pytorch.org/whl/<build>",
            )
        )
    if cpu_image:
        for row in rows:
            if row.cuda_build and row.cuda_build != CPU_BUILD:
                findings.append(
                    Finding(
                        FAIL,
                        f"{env}: the pin is a CPU image but {row.name} {row.version} is the "
                        f"{row.cuda_build} build; install the +cpu wheels "
                        "(https://download.pytorch.org/whl/cpu)",
                    )
                )
    for torch in family.get("torch", []):
        _check_release(env, torch, family, findings)
        if not cpu_image:
            _check_torch_cuda(env, torch, cuda_promise, cuda_env, findings)


def _check_release(
    env: str, torch: PackageRow, family: Mapping[str, list[PackageRow]], findings: list[Finding]
) -> None:
    release = release_for(torch.version or "")
    if release is None:
        known = f"{RELEASES[0].torch}-{RELEASES[-1].torch}"
        findings.append(
            Finding(
                FAIL,
                f"{env}: torch {torch.version} is not in gpuprov's release table (knows "
                f"{known}), so its torchvision/torchaudio pairing cannot be checked: pin a "
                "known release or add the row, with its source, to gpuprov/core/torch_matrix.py",
            )
        )
        return
    for name, wanted in (("torchvision", release.torchvision), ("torchaudio", release.torchaudio)):
        for row in family.get(name, []):
            if _minor(row.version) != wanted:
                findings.append(
                    Finding(
                        FAIL,
                        f"{env}: {name} {row.version} was not released with torch "
                        f"{torch.version}: torch {release.torch} goes with {name} {wanted}.x",
                    )
                )
    tag = torch.cuda_build
    if torch.manager != "conda" and tag and tag != CPU_BUILD and release.build(tag) is None:
        findings.append(
            Finding(
                FAIL,
                f"{env}: torch {release.torch} was never published for {tag} (builds: "
                f"{', '.join(b.tag for b in release.builds)}); this wheel did not come "
                "from download.pytorch.org",
            )
        )


def _minor(version: str | None) -> str | None:
    try:
        return minor_of(version or "")
    except ValueError:
        return None


def _check_torch_cuda(
    env: str,
    torch: PackageRow,
    cuda_promise: str | None,
    cuda_env: str | None,
    findings: list[Finding],
) -> None:
    tag = torch.cuda_build
    if tag is None:
        findings.append(
            Finding(
                FAIL,
                f"{env}: cannot tell which CUDA build torch {torch.version} is (no +cuXXX local "
                "version, no nvidia-cuda-runtime requirement); install it from "
                "https://download.pytorch.org/whl/<build> so the build is recorded",
            )
        )
        return
    if tag == CPU_BUILD:
        findings.append(
            Finding(
                FAIL,
                f"{env}: torch {torch.version} is a CPU build but the image promises CUDA "
                f"{cuda_promise}; install the {_tag_for(cuda_promise)} wheels",
            )
        )
        return
    have = cuda_version_of_build(tag)
    for what, want in (("the pin promises", cuda_promise), ("CUDA_VERSION is", cuda_env)):
        if want and not _matches(".".join(want.split(".")[:2]), have):
            findings.append(
                Finding(
                    FAIL,
                    f"{env}: torch {torch.version} is built for CUDA {have} ({tag}) but {what} "
                    f"{want}; install the {_tag_for(want)} wheels or change the pin",
                )
            )


def _tag_for(cuda: str | None) -> str:
    try:
        return build_for_cuda_version(cuda or "")
    except ValueError:
        return "matching"


def _check_promises(
    promises: Mapping[str, object],
    installs: Mapping[str, Mapping[str, list[PackageRow]]],
    findings: list[Finding],
) -> None:
    for name in TORCH_FAMILY:
        promise = promises.get(name)
        rows = [r for env in installs.values() for r in env.get(name, [])]
        if promise is None:
            continue
        if not rows:
            findings.append(
                Finding(FAIL, f"the pin promises {name} {promise} but the image has no {name}")
            )
        for row in rows:
            if not _matches(str(promise), row.version):
                findings.append(
                    Finding(
                        FAIL,
                        f"{row.environment}: {name} is {row.version} but the pin promises "
                        f"{promise}; rebuild the image or update the pin",
                    )
                )


def _check_python_and_cudnn(
    environments: Mapping[str, Mapping],
    installs: Mapping[str, Mapping[str, list[PackageRow]]],
    promises: Mapping[str, object],
    cpu_image: bool,
    findings: list[Finding],
) -> None:
    for prefix, env_installs in installs.items():
        if "torch" not in env_installs:
            continue
        python, want = environments[prefix].get("python"), promises.get("python")
        if want is not None and not _python_matches(str(want), python):
            findings.append(
                Finding(
                    FAIL if python else WARN,
                    f"{prefix}: torch's environment runs python {python or 'of unknown version'}"
                    f" but the pin promises {want}",
                )
            )
        cudnn = promises.get("cudnn")
        if cpu_image or cudnn is None:
            continue
        evidence = [r for n in _CUDNN_PACKAGES for r in env_installs.get(n, [])]
        if not evidence:
            findings.append(
                Finding(
                    WARN,
                    f"{prefix}: no cuDNN package (conda cudnn or pip nvidia-cudnn-cu*) next to "
                    f"torch, so the promised cuDNN {cudnn} cannot be confirmed",
                )
            )
        for row in evidence:
            if not _matches(str(cudnn), row.version):
                findings.append(
                    Finding(
                        FAIL,
                        f"{prefix}: {row.name} is {row.version} but the pin promises cuDNN {cudnn}",
                    )
                )


def _python_matches(want: str, have: str | None) -> bool:
    if have is None:
        return False
    want_parts, have_parts = want.split("."), have.split(".")
    common = min(len(want_parts), len(have_parts))
    return want_parts[:common] == have_parts[:common]


def _check_labels(
    labels: Mapping[str, str],
    promises: Mapping[str, object],
    managers: set[str],
    findings: list[Finding],
) -> None:
    for key in PROMISE_KEYS:
        label, promise = IMAGE_LABELS[key], promises.get(key)
        value = labels.get(label)
        if key == "cuda":
            same = value is not None and (
                no_cuda(value) if no_cuda(promise) else value.strip() == str(promise)
            )
            absent_ok = False
        else:
            same = value is not None and str(value).strip() == str(promise)
            absent_ok = promise is None and not value
        if same or absent_ok:
            continue
        if key == "cuda" and no_cuda(promise):
            promise = "none"
        findings.append(
            Finding(
                FAIL,
                f"image label {label} is {value!r} but the pin promises {promise!r}: "
                "rebuild the image from the pin with gpuprov's image template",
            )
        )
    label = IMAGE_LABELS["package_manager"]
    value = labels.get(label)
    if not value:
        findings.append(
            Finding(FAIL, f"image has no {label} label: build it with gpuprov's image template")
        )
    elif len(managers) == 1 and value.strip().lower() not in managers:
        findings.append(
            Finding(
                FAIL,
                f"image label {label} says {value!r} but torch was installed by "
                f"{next(iter(managers))}",
            )
        )


def label_findings(labels: Mapping[str, str], promises: Mapping[str, object]) -> list[str]:
    """Why the image's labels do not repeat the pin's promises ([] when they do).

    The check a host makes on its copy of the image before using it, without
    running the inspector; the full audit adds the package checks.
    """
    findings: list[Finding] = []
    _check_labels(labels, promises, set(), findings)
    return [f.message for f in findings if f.severity == FAIL]


# --- entry points ----------------------------------------------------------------------


def _promises(pin: Mapping) -> Mapping[str, object]:
    promises = pin.get("promises") if isinstance(pin, Mapping) else None
    if not isinstance(promises, Mapping):
        raise AuditInputError("the pin has no 'promises' mapping (python, torch, ..., cuda)")
    for key in ("torch", "cuda"):
        if key not in promises:
            hint = " (write 'none' for a CPU image)" if key == "cuda" else ""
            raise AuditInputError(f"the pin's promises lack '{key}'{hint}")
    return promises


def audit_image(
    inspection: Mapping,
    labels: Mapping[str, str] | None,
    cuda_version: str | None,
    pin: Mapping,
) -> AuditReport:
    """Audit one image: `inspection` is the inspector's parsed JSON, `labels` the image's
    labels, `cuda_version` its CUDA_VERSION environment variable (None when unset)."""
    if not isinstance(inspection, Mapping) or inspection.get("schema") != INSPECTOR_SCHEMA:
        raise AuditInputError(
            f"not the output of gpuprov's inspector (schema {INSPECTOR_SCHEMA}): run "
            "gpuprov/inspector.py inside the image with the image's python3"
        )
    environments_raw = inspection.get("environments")
    if not isinstance(environments_raw, list):
        raise AuditInputError("the inspector output has no 'environments' list")
    promises = _promises(pin)
    cpu_image = no_cuda(promises.get("cuda"))
    cuda_promise = None if cpu_image else str(promises["cuda"])
    cuda_env = cuda_version.strip() if cuda_version and cuda_version.strip() else None

    findings: list[Finding] = []
    environments = {str(e.get("prefix")): e for e in environments_raw if isinstance(e, Mapping)}
    installs = {p: _environment_installs(e, findings) for p, e in environments.items()}

    for env_installs in installs.values():
        _check_duplicates(env_installs, findings)
    holding_torch = [p for p, i in installs.items() if "torch" in i]
    if len(holding_torch) > 1:
        findings.append(
            Finding(
                WARN,
                f"torch is installed in {len(holding_torch)} environments ("
                + ", ".join(holding_torch)
                + "); users get whichever python they start: keep one",
            )
        )
    for prefix, env_installs in installs.items():
        family = {n: env_installs[n] for n in TORCH_FAMILY if n in env_installs}
        if family:
            _check_family(prefix, family, cpu_image, cuda_promise, cuda_env, findings)
    _check_promises(promises, installs, findings)
    _check_python_and_cudnn(environments, installs, promises, cpu_image, findings)
    if cuda_promise and cuda_env and not _matches(_major_minor(cuda_promise), cuda_env):
        findings.append(
            Finding(
                FAIL,
                f"the image's CUDA_VERSION is {cuda_env} but the pin promises CUDA "
                f"{cuda_promise}: rebuild from the matching nvidia/cuda base",
            )
        )
    if cpu_image and cuda_env:
        findings.append(
            Finding(
                WARN,
                f"the pin is a CPU image but the image sets CUDA_VERSION={cuda_env}; "
                "a CPU image does not need a CUDA base",
            )
        )
    managers = {
        r.manager for p in holding_torch for n in TORCH_FAMILY for r in installs[p].get(n, [])
    }
    _check_labels(labels or {}, promises, managers, findings)

    return AuditReport(
        reference=_text(pin.get("reference")),
        digest=_text(pin.get("digest")),
        rows=tuple(_report_rows(installs)),
        findings=tuple(findings),
    )


def _major_minor(version: str) -> str:
    return ".".join(version.strip().split(".")[:2])


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _report_rows(installs: Mapping[str, Mapping[str, list[PackageRow]]]) -> Iterable[PackageRow]:
    shown = (*TORCH_FAMILY, "numpy")
    for prefix in sorted(installs):
        env = installs[prefix]
        yield from (r for name in shown for r in env.get(name, []))
        yield from (
            r for name in sorted(env) if name not in shown and len(env[name]) > 1 for r in env[name]
        )


def render_table(report: AuditReport) -> str:
    """The report as text for a terminal: a package table, then the findings, then the verdict."""
    header = ("ENVIRONMENT", "PACKAGE", "VERSION", "MANAGER", "CUDA", "SOURCE")
    body = [
        (r.environment, r.name, r.version or "?", r.manager, r.cuda_build or "-", r.source or "-")
        for r in report.rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = []
    if report.reference:
        lines.append(f"image {report.reference}" + (f"@{report.digest}" if report.digest else ""))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (header, *body)
    ]
    if not body:
        lines.append("(no torch, torchvision, torchaudio or numpy found)")
    lines += [f"{f.severity.upper()}: {f.message}" for f in report.findings]
    lines.append("PASS" if report.passed else "FAIL")
    return "\n".join(lines) + "\n"
