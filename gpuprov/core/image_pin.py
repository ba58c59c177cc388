"""The pin against a host's copy of the team image: digest, image ID, labels, disk space.

Strings and dicts in (the pin, `docker image inspect` output), messages out. A
registry pull is verified by the manifest digest Docker recorded (RepoDigests);
an image moved as a `docker save` archive has no RepoDigests, so it is verified
by its image ID, the digest of its config, which the manifest names and
therefore fixes: the pin records both.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence

from . import image_ref
from .audit import AuditInputError, AuditReport, audit_image, label_findings
from .labels import IMAGE_LABELS

REGISTRY = "registry"
ARCHIVE = "archive"
BUILD = "build"
VIA = (REGISTRY, ARCHIVE, BUILD)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class PinError(ValueError):
    """The pin cannot be used as written."""


def pinned_reference(pin: Mapping) -> str:
    """`reference@digest`, the only name a pulled team image is ever used by."""
    reference = image_ref.parse(str(pin.get("reference", "")))
    digest = pin.get("digest")
    if not digest or not image_ref.is_digest(str(digest)):
        raise PinError(
            f"gpuprov_image.digest is {digest!r}: a pulled image needs sha256: and 64 hex "
            "digits (run the build with push, or `gpuprov image pin REF`, to get it)"
        )
    return f"{reference.name}@{digest}"


def pulled_reference(pin: Mapping) -> str:
    """`reference@digest` for a pin with a digest; '' for one a run builds."""
    return pinned_reference(pin) if pin.get("digest") else ""


def run_reference(pin: Mapping, transfer: str = "registry") -> str:
    """What a host's workspaces run once the pin is on it: the image ID after an archive
    load (`docker save` by ID keeps no registry digest), `reference@digest` after a pull,
    '' for a pin the run builds (its ID is known only after the build)."""
    if not pin.get("digest"):
        return ""
    return str(pin.get("id") or "") if transfer == "archive" else pinned_reference(pin)


def pull_failure(pin: Mapping, error: str) -> str:
    """Why a pull of the pinned digest failed, in the words that say what to do."""
    registry = image_ref.parse(str(pin["reference"])).registry or "docker.io"
    return (
        f"could not pull {pinned_reference(pin)}: {error or 'unknown error'}. 'manifest "
        "unknown' means the registry has no image with that digest (check "
        "gpuprov_image.digest); 'no basic auth credentials' or 'unauthorized' means the "
        "registry wants a login (set gpuprov_registry.username and its vaulted password); a "
        f"connection error means the host cannot reach {registry} (set team_image_transfer: "
        "archive for hosts that never can)."
    )


def archive_source(chosen: str, transfers: Mapping[str, str]) -> str:
    """The host that saves the archive: the one chosen, else the first host of the batch
    that pulls from the registry ('' when none does)."""
    return chosen or next((h for h, via in transfers.items() if via == REGISTRY), "")


def run_names(pin: object) -> set[str]:
    """The names the pinned image runs under on hosts: reference@digest, and its ID
    (hosts fed by an archive); none for a pin without either."""
    if not isinstance(pin, Mapping):
        return set()
    names = {str(pin["id"])} if pin.get("id") else set()
    with contextlib.suppress(PinError, image_ref.ImageReferenceError):
        names.add(pinned_reference(pin))
    return names


def _same_repository(left: str, right: str) -> bool:
    def norm(name: str) -> str:
        ref = image_ref.parse(name)
        registry = ref.registry or "docker.io"
        path = ref.repository
        if registry == "docker.io" and "/" not in path:
            path = f"library/{path}"
        return f"{registry}/{path}"

    return norm(left) == norm(right)


def verify_image(pin: Mapping, image: Mapping | None, via: str) -> list[str]:
    """What is wrong with the host's image (docker inspect `image`) for the pin; [] if right.

    via: 'registry' (pulled by digest), 'archive' (docker load) or 'build' (built here).
    """
    if via not in VIA:
        raise PinError(f"via must be one of {', '.join(VIA)}, not {via!r}")
    reference = str(pin.get("reference"))
    want_id = pin.get("id")
    if image is None:
        what = f"{reference}@{pin.get('digest')}" if via == REGISTRY else f"image {want_id}"
        return [f"{what} is not on this host after the {via} step"]
    problems = []
    have_id = str(image.get("Id", ""))
    if via == REGISTRY:
        digest = str(pin.get("digest"))
        repo_digests = [str(r) for r in image.get("RepoDigests") or []]
        held = [
            r for r in repo_digests if "@" in r and _same_repository(r.split("@")[0], reference)
        ]
        if not any(r.split("@", 1)[1] == digest for r in held):
            problems.append(
                f"the local image for {reference} has digest(s) "
                f"{', '.join(r.split('@', 1)[1] for r in held) or 'none'}, not the pinned "
                f"{digest}: remove it (docker image rm) and run the play again"
            )
    if via == ARCHIVE and not want_id:
        problems.append(
            "gpuprov_image.id is not set, so an image loaded from an archive cannot be "
            "verified (an archive carries no registry digest): add the id that "
            "`gpuprov image pin` prints"
        )
    if want_id and have_id != str(want_id):
        problems.append(
            f"the image's ID is {have_id or 'unknown'} but the pin says id {want_id}: the "
            f"{'archive' if via == ARCHIVE else 'image'} holds another image; re-export it "
            "from a host that pulled the pinned digest"
        )
    labels = (image.get("Config") or {}).get("Labels") or {}
    problems += label_findings(labels, pin.get("promises") or {})
    return problems


def parse_size(text: str | int) -> int:
    """'30g' -> bytes; a bare number is bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise PinError(f"{text!r} is not a size such as 30g or 512m")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def human_size(value: int) -> str:
    for unit in ("t", "g", "m", "k"):
        if value >= _UNITS[unit]:
            return f"{value / _UNITS[unit]:.1f} {unit.upper()}iB"
    return f"{value} B"


def room_needed(pin: Mapping, min_free: int, archive_bytes: int = 0) -> tuple[int, str]:
    """Bytes a host needs free before the team image arrives, and how that was reckoned.

    team_image_min_free is the floor. A pin that records the image's unpacked
    size (``gpuprov image pin`` writes it) may ask for more: that size, half
    again for the compressed layers Docker downloads while it unpacks the
    earlier ones, and 1 GiB of slack.
    """
    if archive_bytes:
        return archive_needed(archive_bytes), "the archive copied here and its unpacked layers"
    size = pin.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return min_free, (
            "team_image_min_free; lower it if the image is smaller, or put the image's size in "
            "the pin (gpuprov image pin writes it)"
        )
    room = size + size // 2 + 1024**3
    if room > min_free:
        return room, f"the image unpacks to {human_size(size)}, and its layers download beside it"
    return min_free, f"team_image_min_free; the image itself needs {human_size(room)}"


def space_problem(free: int, needed: int, where: str, what: str, reckoned: str) -> str | None:
    """A message when ``free`` bytes at ``where`` cannot hold ``needed`` bytes for ``what``."""
    if free >= needed:
        return None
    return (
        f"not enough disk space for {what}: {where} has {human_size(free)} free, "
        f"{human_size(needed)} needed ({reckoned}); free space there (docker image prune, "
        "docker builder prune)"
    )


def archive_needed(archive_bytes: int) -> int:
    """Bytes a `docker load` of an archive needs: the copy of the archive plus its layers."""
    return archive_bytes * 2 + 1024**3


def pin_from_image(image: Mapping, reference: str, source: str = "pull") -> dict:
    """The pin for a pushed image (docker inspect output), from its RepoDigests and labels."""
    ref = image_ref.parse(reference)
    digests = [
        str(r).split("@", 1)[1]
        for r in image.get("RepoDigests") or []
        if "@" in str(r) and _same_repository(str(r).split("@")[0], ref.name)
    ]
    if not digests:
        raise PinError(
            f"{reference} has no registry digest on this engine: push it first "
            f"(docker push {ref.name}:TAG), then ask again"
        )
    labels = (image.get("Config") or {}).get("Labels") or {}
    promises = {}
    for key, label in IMAGE_LABELS.items():
        if key != "package_manager" and labels.get(label) is not None:
            promises[key] = labels[label]
    if "torch" not in promises:
        raise PinError(
            f"{reference} has no {IMAGE_LABELS['torch']} label: it was not built by gpuprov's "
            "image template, so it promises nothing to pin"
        )
    cuda = str(promises.get("cuda", "none")).lower()
    return {
        "reference": ref.name,
        "digest": digests[0],
        "id": str(image.get("Id")),
        "source": source,
        "flavour": "cpu" if cuda in ("", "none", "cpu") else "cuda",
        **({"size": int(image["Size"])} if image.get("Size") else {}),
        "promises": promises,
    }


_PLAIN = re.compile(r"^[A-Za-z0-9_./:@-]+$")


def _yaml_scalar(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    # Versions such as 3.11 or 12.6 would be read back as numbers: quote all but plain words.
    if (
        _PLAIN.match(text)
        and not re.match(r"^[\d.]+$", text)
        and text.lower() not in ("yes", "no", "true", "false", "null", "on", "off", "none")
    ):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_pin(pin: Mapping, comment: str | None = None) -> str:
    """The pin as the YAML to commit in group_vars/all/image.yml."""
    lines = [f"# {line}" for line in (comment or "").splitlines()]
    lines.append("gpuprov_image:")
    for key in ("reference", "digest", "id", "source", "flavour", "size"):
        if pin.get(key) is not None:
            lines.append(f"  {key}: {_yaml_scalar(pin[key])}")
    lines.append("  promises:")
    promises = pin.get("promises") or {}
    for key in ("python", "torch", "torchvision", "torchaudio", "cuda", "cudnn"):
        if key in promises:
            lines.append(f"    {key}: {_yaml_scalar(promises[key])}")
    return "\n".join(lines) + "\n"


def audit_commands(image: str, docker: Sequence[str] = ("docker",)) -> dict[str, list[str]]:
    """The two Docker CLI calls an audit makes: run the inspector, read the config.

    The inspector goes in on stdin (no bind mount, no network, nothing written).
    """
    return {
        "inspect": [*docker, "image", "inspect", image],
        "run": [
            *docker,
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            image,
            "-",
        ],
    }


def image_environment(image: Mapping) -> dict[str, str]:
    """The image's ENV as a dict (docker inspect Config.Env)."""
    env = {}
    for item in (image.get("Config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def parse_inspect(stdout: str, image: str) -> dict:
    """The one image `docker image inspect IMAGE` printed."""
    try:
        found = json.loads(stdout)
    except ValueError as error:
        raise AuditInputError(f"docker image inspect {image} printed no JSON: {error}") from None
    if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], dict):
        raise AuditInputError(f"docker image inspect {image} did not describe one image")
    return found[0]


def audit_outputs(inspector_stdout: str, image: Mapping, pin: Mapping) -> AuditReport:
    """Audit from the inspector's JSON and the image's inspect data (labels, CUDA_VERSION)."""
    try:
        inspection = json.loads(inspector_stdout)
    except ValueError as error:
        raise AuditInputError(
            f"the inspector printed no JSON ({error}); does the image have python3 on PATH?"
        ) from None
    labels = (image.get("Config") or {}).get("Labels") or {}
    return audit_image(inspection, labels, image_environment(image).get("CUDA_VERSION"), pin)
