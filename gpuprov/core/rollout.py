"""A rollout's rules on the controller: its batches, its failure budget, its pre-flight
verdict, and what it says (the plan of a check run, why and where it stopped)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from .image_pin import run_names
from .labels import IMAGE_LABEL, USER_LABEL
from .rollout_settings import RolloutError, allowed_failures, batches, schedule
from .workspace import container_name


def moving(
    planned: Sequence[Mapping[str, Any]],
    running: Mapping[str, str],
    target: str,
    images: Mapping[str, str],
    pin: Mapping[str, Any],
) -> list[Mapping[str, Any]]:
    """The planned workspaces whose container runs another image than the one it goes to.

    ``images`` gives some workspaces an image of their own (a rollback, or a
    busy workspace held back); the others go to ``target``. A workspace
    already on the pin under another of its names (the ID an archive host
    runs it by) does not move; one without a container yet does.
    """
    moves = []
    for plan in planned:
        name = container_name(plan["user"], plan["kind"])
        have, want = running.get(name), images.get(name) or target
        if have != want and not (not images.get(name) and have in run_names(pin)):
            moves.append(plan)
    return moves


def host_moves(
    planned: Sequence[Mapping[str, Any]],
    running: Mapping[str, str],
    target: str,
    images: Mapping[str, str],
    state: Mapping[str, Any] | None,
    pin: Mapping[str, Any],
) -> bool:
    """Whether the host's workspaces move (an unfinished record always does)."""
    return bool(state) or bool(moving(planned, running, target, images, pin))


def restarting(
    planned: Sequence[Mapping[str, Any]],
    running: Mapping[str, str],
    target: str,
    images: Mapping[str, str],
    pin: Mapping[str, Any],
) -> list[Mapping[str, Any]]:
    """The workspaces whose running container a move would end: where work can be lost."""
    return [
        plan
        for plan in moving(planned, running, target, images, pin)
        if container_name(plan["user"], plan["kind"]) in running
    ]


def container_name_of(plan: Mapping[str, Any]) -> str:
    return container_name(plan["user"], plan["kind"])


def held(pending: Mapping[str, Any], running: Mapping[str, str]) -> dict[str, str]:
    """Busy workspaces kept on the image they run, so this run does not move them."""
    return {name: running[name] for name in pending if name in running}


def activity_summary(
    host: str, moved: Sequence[Mapping[str, Any]], pending: Mapping[str, Sequence[str]]
) -> str:
    """Who moved and who is pending on ``host``, and why."""
    said = f"{host}: moved {', '.join(map(container_name_of, moved)) or 'nothing'}"
    if pending:
        waits = "; ".join(f"{name} ({', '.join(why)})" for name, why in pending.items())
        said += (
            f"; PENDING, still on their image: {waits}. The next run of the same playbook "
            "moves them once they are idle (or set gpuprov_rollout_busy: force)"
        )
    return said


def plan_message(host: str, running: str, pinned: str, audit: bool, verify: bool) -> str:
    """What a check run says the rollout would do on ``host``."""
    gates = [
        *(["the audit"] if audit else []),
        *(["the host gates"] if verify else []),
        "the health checks",
    ]
    return (
        f"would move the workspaces on {host} from {running or 'nothing'} to "
        f"{pinned or 'the image built in the run'} behind {', '.join(gates)}"
    )


def stop_message(host: str, failure: str, previous: str, rollback_failure: str | None) -> str:
    """Why the rollout stopped at ``host``, and the state it left the host's workspaces in."""
    if not previous:
        state = (
            "It ran no workspace before, so there is nothing to roll back to (workspaces "
            "started on the new image may still run); "
        )
    elif rollback_failure:
        state = f"ROLLBACK FAILED too ({rollback_failure}); its workspaces need attention: "
    else:
        state = f"Its workspaces are back on {previous} and answer; "
    return (
        f"rollout stopped on {host}: {failure}. {state}hosts of later batches keep their image. "
        "Fix the cause, then run playbooks/upgrade.yml again."
    )


def lost_hosts(targeted: Sequence[str], active: Sequence[str]) -> list[str]:
    """The hosts a play started with that failed or became unreachable since."""
    still = set(active)
    return [host for host in targeted if host not in still]


def failures(hostvars: Mapping[str, Any], targeted: Sequence[str]) -> dict[str, str]:
    """The hosts whose batch began and did not end well, with why.

    The batch play marks each host ``rollout_began`` when its batch starts and
    ``rollout_done`` when the host is through it; a host that failed or was
    lost in between has only the first. With gpuprov_rollout_failure_action
    ``rollback`` a failing host is not failed in Ansible's sense (a batch whose
    every host fails would end the playbook before the hosts already moved go
    back), so it says ``rollout_stopped`` instead.
    """
    found = {}
    for host in targeted:
        facts = hostvars.get(host) or {}
        if facts.get("rollout_stopped"):
            found[host] = "stopped"
        elif facts.get("rollout_began") and not facts.get("rollout_done"):
            found[host] = "failed or became unreachable"
    return found


def budget_message(hostvars: Mapping[str, Any], targeted: Sequence[str]) -> str:
    """Why no further batch may start ("" when the failure budget still holds).

    gpuprov_rollout_max_failed is a team variable, so any host's value is the fleet's.
    """
    first = (hostvars.get(targeted[0]) or {}) if targeted else {}
    allowed = allowed_failures(first.get("gpuprov_rollout_max_failed"), len(targeted))
    failed = failures(hostvars, targeted)
    if len(failed) <= allowed:
        return ""
    return (
        f"rollout stopped: {len(failed)} host(s) failed or became unreachable "
        f"({', '.join(failed)}), more than gpuprov_rollout_max_failed allows ({allowed}); "
        "later batches do not start. The messages above say why each host stopped."
    )


def moved_hosts(hostvars: Mapping[str, Any], hosts: Sequence[str]) -> list[str]:
    """The hosts whose workspaces this run moved (``rollout_moved``) and that still run them."""
    return [host for host in hosts if (hostvars.get(host) or {}).get("rollout_moved")]


def promotion_message(canary: Sequence[str], image: str) -> str:
    """Why a manual promotion ended the run after the canary, and how to go on."""
    return (
        f"canary {', '.join(canary)} runs {image} and passed the health gate; no other host "
        "moved (gpuprov_rollout_promote: manual). Look at it, then promote the image: run the "
        "same playbooks/upgrade.yml again (the canary does not move twice), or go back with "
        "playbooks/rollback.yml."
    )


def failure_advice(over_budget: str, action: str, moved: Sequence[str]) -> str:
    """What happens to the hosts already moved once the budget is spent, and what to do."""
    if action == "rollback":
        back = ", ".join(moved) if moved else "none had moved"
        return (
            f"{over_budget} gpuprov_rollout_failure_action is rollback: the hosts this run "
            f"moved go back to the images their records name ({back}). Fix the cause, then "
            "run the same playbooks/upgrade.yml again."
        )
    return (
        f"{over_budget} Fix that, then run the same playbooks/upgrade.yml again: hosts "
        "already moved stay, the others continue (gpuprov_rollout_failure_action: rollback "
        "sends the moved hosts back instead)."
    )


def preflight_message(
    targeted: Sequence[str], active: Sequence[str], blockers: Mapping[str, str]
) -> str:
    """Every host that blocks the rollout and why ("" when none does): nothing moves then."""
    reasons = {
        host: "unreachable, or lost during the pre-flight" for host in lost_hosts(targeted, active)
    }
    reasons.update({host: why for host, why in blockers.items() if why})
    if not reasons:
        return ""
    lines = "; ".join(f"{host}: {reasons[host]}" for host in targeted if host in reasons)
    return (
        f"pre-flight refused the rollout, {len(reasons)} of {len(targeted)} host(s) would block "
        f"it, so no workspace was touched anywhere. {lines}. Fix these (or leave a host out "
        "with --limit '!HOST') and run playbooks/upgrade.yml again."
    )


def _names(planned: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{w['user']} {w['kind']}" for w in planned) or "no workspace"


def plan_table(
    targeted: Sequence[str],
    sizes: Sequence[int | str],
    workspaces: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[str]:
    """The rollout's batches, one line each, with the workspaces each host restarts."""
    lines = []
    for number, hosts in enumerate(schedule(targeted, sizes), start=1):
        name = "canary" if number == 1 else f"batch {number}"
        moved = ", ".join(f"{host} ({_names(workspaces.get(host) or [])})" for host in hosts)
        lines.append(f"{name}: {moved}")
    return lines


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            # The command name in parentheses may hold spaces: the fields follow the last ')'.
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def controller_run(started: str) -> dict[str, Any]:
    """This ansible-playbook run as the hosts' records name it: controller, pid, start time.

    Ansible's workers are forks of the playbook process with its command line:
    the run's pid is the topmost ancestor that shares it.
    """
    pid, own = os.getpid(), _cmdline(os.getpid())
    while (parent := _parent(pid)) > 1 and _cmdline(parent) == own:
        pid = parent
    controller = socket.gethostname()
    return {
        "controller": controller,
        "pid": pid,
        "started": started,
        "id": f"{controller}:{pid}:{started}",
    }


def _holder_gone(holder: Mapping[str, Any]) -> bool | None:
    """Whether the run holding a host has ended (None: it ran on another controller)."""
    if holder.get("controller") != socket.gethostname():
        return None
    return not _cmdline(int(holder.get("pid") or 0))


def lock_blocker(state: Mapping[str, Any] | None, run: Mapping[str, Any], break_lock: bool) -> str:
    """Why this run must leave a host alone ("" when it may take it).

    A record left by a run that has ended (killed, interrupted, its host lost)
    is this run's to resume; one whose run still lives, or that another
    controller left, is not, unless ``rollout_break_lock`` says it is dead.
    """
    holder = (state or {}).get("run") or {}
    if not holder or holder.get("id") == run["id"] or break_lock:
        return ""
    gone = _holder_gone(holder)
    if gone:
        return ""
    who = (
        f"the rollout started {holder.get('started', '?')} from {holder.get('controller', '?')} "
        f"(pid {holder.get('pid', '?')})"
    )
    if gone is None:
        return (
            f"{who} holds it and gpuprov cannot tell from here whether that run still lives; "
            "if it does not, run again with -e rollout_break_lock=true"
        )
    return f"{who} is still running on it; wait for it to end"


def expected_holder(state: Mapping[str, Any] | None) -> str:
    """The holder a run's pre-flight judged gone, which its ``begin`` may replace."""
    return ((state or {}).get("run") or {}).get("id", "")


def container_names(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of docker_host_info's containers, without Docker's leading slash."""
    return [c["Names"][0].lstrip("/") for c in containers if c.get("Names")]


def workspace_images(containers: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Each workspace container's image, by name, from docker_host_info's list."""
    images = {}
    for container in containers:
        labels = container.get("Labels") or {}
        names = container.get("Names") or []
        if labels.get(USER_LABEL) is not None and labels.get(IMAGE_LABEL) and names:
            images[names[0].lstrip("/")] = labels[IMAGE_LABEL]
    return images


def rollback_images(
    host: str, history: Sequence[Mapping[str, Any]], running: Mapping[str, str], to: str = ""
) -> dict[str, str]:
    """The image each workspace of ``host`` goes back to, from the host's rollout history.

    By default each workspace returns to what it ran before the last rollout
    that reached the host; ``to`` names one image from the history for all.
    """
    rolled = [entry for entry in history if entry.get("outcome") == "rolled_out"]
    if not rolled:
        raise RolloutError(
            f"{host} has no rollout on record (/var/lib/gpuprov/rollout/history.jsonl), so "
            "there is nothing to go back to; pin the image you want and run upgrade.yml"
        )
    if not to:
        previous = rolled[-1].get("previous") or {}
        return {name: previous.get(name, image) for name, image in running.items()}
    known = [entry.get("image", "") for entry in rolled]
    known += [image for entry in rolled for image in (entry.get("previous") or {}).values()]
    if to not in known:
        listed = ", ".join(dict.fromkeys(image for image in known if image))
        raise RolloutError(
            f"rollback_to: {to} is not in {host}'s history; the images on record are: {listed}"
        )
    return dict.fromkeys(running, to)


def previous_image(previous: Mapping[str, str]) -> str:
    """The image most of a host's workspaces ran before the rollout ("" when none ran).

    Workspaces the rollout itself created have no image of their own to go
    back to; a rollback starts them on this one. Ties go to the name sorting
    first, so the answer does not depend on the record's order.
    """
    counts: dict[str, int] = {}
    for image in previous.values():
        if image:
            counts[image] = counts.get(image, 0) + 1
    return min(counts, key=lambda image: (-counts[image], image)) if counts else ""


def serial(hostvars: Mapping[str, Any], hosts: Sequence[str]) -> list[int | str]:
    """``serial`` for upgrade.yml's batch play, from the fleet's gpuprov_rollout_batches.

    A team variable, so any host's value is the fleet's. Without hostvars (a
    syntax check runs no play that would set them), the default batches.
    """
    first = hostvars[hosts[0]] if hostvars and hosts else {}
    return batches(first.get("gpuprov_rollout_batches"))


def webhook_body(host: str, image: str, policy: str, activity: Mapping[str, Any]) -> dict[str, Any]:
    """What the team's webhook gets when workspaces on ``host`` are in use (Slack reads
    ``text``; anything else reads the fields)."""
    busy = activity.get("busy") or {}
    pending = activity.get("pending") or {}
    workspaces = [
        {
            "name": name,
            "reasons": list(reasons),
            "outcome": "pending" if name in pending else "moves",
        }
        for name, reasons in sorted(busy.items())
    ]
    lines = "; ".join(f"{w['name']} {w['outcome']} ({', '.join(w['reasons'])})" for w in workspaces)
    return {
        "host": host,
        "image": image,
        "policy": policy,
        "workspaces": workspaces,
        "text": f"gpuprov rollout to {image} on {host} (policy {policy}): {lines}",
    }


def is_canary(batch: Sequence[str], targeted: Sequence[str], sizes: Sequence[int | str]) -> bool:
    """Whether ``batch`` is the rollout's first batch, with batches still to come after it."""
    cut = schedule(targeted, sizes)
    return len(cut) > 1 and set(batch) <= set(cut[0])
