"""A rollout's record on each host: the lock, each workspace's previous image, the history.

It lives under /var/lib/gpuprov/rollout on the host, so what a rollout knows
survives the controller: a run killed mid-batch (SIGKILL, Ctrl-C, a lost
laptop) leaves ``state.json``, and the next run reads each workspace's
previous image from it instead of from containers that may already have
moved. ``state.json`` exists only while a host's workspaces are in flux, and
names the run holding the host; ``history.jsonl`` gets one line per finished
cut-over or rollback. Standard library only: the module runs it on the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

STATE_DIR = "/var/lib/gpuprov/rollout"
STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
OUTCOMES = ("rolled_out", "rolled_back", "rollback_failed")


class RolloutStateError(RuntimeError):
    """The host's rollout record forbids the step (another run holds it, or it is unreadable)."""


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    """Serialise read-modify-write of the record between runs reaching the host at once."""
    os.makedirs(folder, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: str, content: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".state.", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _state(folder: str) -> dict[str, Any] | None:
    path = os.path.join(folder, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise RolloutStateError(
            f"{path} cannot be read ({error}); it says which rollout holds the host. Look at "
            "it, and remove it only when no rollout runs there"
        ) from error


def history(folder: str) -> list[dict[str, Any]]:
    """The host's finished cut-overs and rollbacks, oldest first (unreadable lines skipped)."""
    try:
        with open(os.path.join(folder, HISTORY_FILE), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def read(folder: str = STATE_DIR) -> dict[str, Any]:
    """What a run finds: an unfinished rollout's state (or None), and the history."""
    return {"state": _state(folder), "history": history(folder)}


def begin(
    folder: str,
    run: Mapping[str, Any],
    target: str,
    running: Mapping[str, str],
    expect: str,
    now: str,
) -> tuple[dict[str, Any], bool]:
    """Take the host for ``run`` before any container changes; returns (state, changed).

    ``running`` maps each workspace container to the image it runs now. A record
    left by an interrupted run keeps its previous images: those are what the
    workspaces ran before any of them moved. ``expect`` is the holder the run's
    pre-flight saw and judged gone ("" for none): anyone else holding the host
    now means a second rollout started meanwhile, and this one must not touch it.
    """
    with _locked(folder):
        old = _state(folder)
        holder = (old or {}).get("run", {}).get("id", "")
        if holder not in ("", run["id"], expect):
            raise RolloutStateError(
                f"another rollout holds this host since the pre-flight ({holder}); "
                "this run leaves the host alone"
            )
        previous = dict((old or {}).get("previous") or {})
        for name, image in running.items():
            previous.setdefault(name, image)
        state = {
            "run": dict(run),
            "target": target,
            "previous": previous,
            "since": (old or {}).get("since") or now,
            "resumed_from": holder
            if holder and holder != run["id"]
            else (old or {}).get("resumed_from", ""),
        }
        if state == old:
            return state, False
        _write(os.path.join(folder, STATE_FILE), json.dumps(state, indent=2, sort_keys=True) + "\n")
        return state, True


def finish(
    folder: str, run: Mapping[str, Any], outcome: str, image: str, now: str
) -> dict[str, Any]:
    """Close the host's rollout: one history line, and the host is free again."""
    if outcome not in OUTCOMES:
        raise RolloutStateError(f"unknown outcome {outcome!r} (one of {', '.join(OUTCOMES)})")
    with _locked(folder):
        state = _state(folder) or {}
        holder = state.get("run", {}).get("id", "")
        if holder and holder != run["id"]:
            raise RolloutStateError(f"another rollout holds this host ({holder}); not closing it")
        entry = {
            "time": now,
            "run": run["id"],
            "outcome": outcome,
            "image": image,
            "target": state.get("target", image),
            "previous": state.get("previous", {}),
            "resumed_from": state.get("resumed_from", ""),
        }
        with open(os.path.join(folder, HISTORY_FILE), "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, STATE_FILE))
        return entry
