"""Docker's daemon.json: merge the NVIDIA runtime in, keeping every key a user put there."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

NVIDIA_RUNTIME = "nvidia"


class DaemonJsonError(ValueError):
    """daemon.json that gpuprov must not rewrite (it would lose what is in it)."""


def load(text: str | None) -> dict[str, Any]:
    """daemon.json text (None: no file) as a dict; refuses anything but a JSON object."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DaemonJsonError(
            f"/etc/docker/daemon.json is not valid JSON ({exc}): fix it by hand; gpuprov "
            f"does not rewrite a file it cannot read"
        ) from None
    if not isinstance(value, dict):
        raise DaemonJsonError("/etc/docker/daemon.json is not a JSON object: fix it by hand")
    return value


def merge_nvidia_runtime(
    current: Mapping[str, Any], runtime_path: str, set_default: bool = False
) -> dict[str, Any]:
    """`current` with runtimes.nvidia (and default-runtime when asked); nothing else changes.

    Like `nvidia-ctk runtime configure --runtime=docker`, but a key the user set
    in the nvidia runtime (e.g. runtimeArgs) stays too.
    """
    merged = copy.deepcopy(dict(current))
    runtimes = merged.get("runtimes")
    if runtimes is None:
        runtimes = merged["runtimes"] = {}
    if not isinstance(runtimes, dict):
        raise DaemonJsonError("'runtimes' in /etc/docker/daemon.json is not an object")
    runtime = runtimes.get(NVIDIA_RUNTIME)
    runtime = dict(runtime) if isinstance(runtime, dict) else {}
    runtime["path"] = runtime_path
    runtime.setdefault("args", [])
    runtimes[NVIDIA_RUNTIME] = runtime
    if set_default:
        merged["default-runtime"] = NVIDIA_RUNTIME
    return merged


def dump(config: Mapping[str, Any]) -> str:
    """The text gpuprov writes: stable (4-space indent, as nvidia-ctk writes), newline-ended."""
    return json.dumps(config, indent=4) + "\n"


def restart_needed(configured: Mapping[str, Any], docker_info: Mapping[str, Any] | None) -> bool:
    """Whether the running docker lacks the runtime (or default) the file configures."""
    if not docker_info:
        return False
    running = set((docker_info.get("Runtimes") or {}).keys())
    wanted = set((configured.get("runtimes") or {}).keys())
    if not wanted <= running:
        return True
    default = configured.get("default-runtime")
    return bool(default) and docker_info.get("DefaultRuntime") != default
