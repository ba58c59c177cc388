"""Class 7 of hostile inventories: GPUs named wrong."""

from __future__ import annotations

import pytest
from hostile import HOSTS, Case, alice_with, assert_case, users

UUID = "5c89852c-d268-c3f3-1b07-005d5ae1dc3f"
NO_COUNT = {"hosts.yml": HOSTS.replace("{count: 2, model: H100}", "{model: H100}")}


def gpus(text: str, words: str = "", key: str = "gpuprov_users[0].gpus", **more) -> Case:
    files = {**more.pop("files", {}), **users(alice_with(f"gpus: {text}"))}
    expect = ("users.yml", "user 'alice'", key, words) if words else None
    return Case(files, expect, **more)


AT = "gpuprov_users[0].gpus[0]"

CASES = {
    "the same index twice": gpus("[0, 0]", "lists GPU 0 twice"),
    "the same UUID twice": gpus(f"[GPU-{UUID}, GPU-{UUID}]", f"lists GPU GPU-{UUID} twice"),
    "an index beyond the count": gpus("[2]", "GPU index 2 does not exist", AT),
    "a UUID that is not one": gpus("[GPU-zzzzzzzz]", "as `nvidia-smi -L` prints", AT),
    "a UUID of dashes": gpus("[GPU--------]", "GPU-<uuid>", AT),
    "a MIG name without its GPU": gpus("[MIG-1/7/0]", "MIG-GPU-<uuid>/<gi>/<ci>", AT),
    "a MIG profile instead of a device": gpus("[1g.10gb]", "a GPU index", AT),
    "indices on a host that gives no count": gpus(
        "[0, 1]", "does not say how many GPUs it has", files=NO_COUNT, warning=True
    ),
    # What a team may write.
    "GPU UUIDs": gpus(f"[GPU-{UUID}]"),
    "a MIG UUID (R470 and later)": gpus(f"[MIG-{UUID}]"),
    "a MIG device in the old form": gpus(f"[MIG-GPU-{UUID}/7/0]"),
    "a count": gpus("{count: 2}"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)
