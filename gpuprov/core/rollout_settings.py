"""A rollout's fleet settings: the batches (canary first) and the failure budget.

A leaf module: the schema (variables.py) checks inventories with the same
parsers the playbooks use, so neither may import the other's dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


class RolloutError(ValueError):
    """A rollout setting gpuprov cannot use, with the fix."""


_PERCENT = re.compile(r"0*([1-9][0-9]?|100)%")
DEFAULT_BATCHES: tuple[int | str, ...] = (1, "25%", "100%")
# What happens to the hosts already moved when more fail than the budget allows
# (Swarm's update_config failure_action): they stay, or they go back.
FAILURE_ACTIONS = ("stop", "rollback")
# After a healthy canary: go on to the next batch, or end the run until the team
# runs the same command again (the canary, already moved, does not move twice).
PROMOTIONS = ("auto", "manual")


def _batch(item: object, key: str) -> int | str:
    text = str(item).strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    match = _PERCENT.fullmatch(text)
    if match:
        return f"{int(match.group(1))}%"
    raise RolloutError(
        f"{key}: {item!r} is not a batch size; write a number of hosts above 0 or a "
        f'percentage such as 25%, e.g. {key}=1,25%,100% or a YAML list [1, "25%", "100%"]'
    )


def batches(value: object, key: str = "gpuprov_rollout_batches") -> list[int | str]:
    """The batch sizes, first the canary: from a list, or from ``-e key=1,25%,100%``."""
    if value is None or value == "":
        return list(DEFAULT_BATCHES)
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise RolloutError(f'{key}: give a list of batch sizes, e.g. [1, "25%", "100%"]')
    return [_batch(item, key) for item in items]


def _size(batch: int | str, total: int) -> int:
    """Hosts in a batch the way Ansible's ``serial`` counts them (pct_to_int)."""
    if isinstance(batch, int):
        return batch
    return max(1, total * int(batch[:-1]) // 100)


def schedule(hosts: Sequence[str], sizes: Sequence[int | str]) -> list[list[str]]:
    """The hosts of each batch, as ``serial`` cuts them: the last size repeats."""
    left, cut, step = list(hosts), [], 0
    while left:
        size = _size(sizes[min(step, len(sizes) - 1)], len(hosts))
        cut.append(left[:size])
        left, step = left[size:], step + 1
    return cut


def allowed_failures(value: object, total: int, key: str = "gpuprov_rollout_max_failed") -> int:
    """How many hosts may fail or be lost before the rollout stops: a count or a percentage."""
    text = "0" if value is None or value == "" else str(value).strip()
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"0*([0-9]{1,2}|100)%", text)
    if not match or isinstance(value, bool):
        raise RolloutError(
            f"{key}: {value!r} is neither a number of hosts nor a percentage; write e.g. "
            f"{key}=0 (stop at the first failed host) or {key}=10%"
        )
    return total * int(match.group(1)) // 100
