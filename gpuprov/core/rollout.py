"""What a rollout says: the plan of a check run, and why and where it stopped."""

from __future__ import annotations

from collections.abc import Mapping

from .image_pin import run_names


def moves(running: str, pin: Mapping) -> bool:
    """Whether the host's workspaces, on ``running``, would move to the pin."""
    return running not in run_names(pin)


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
