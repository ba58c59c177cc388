"""daemon.json merge: the nvidia runtime goes in, every other key stays."""

from __future__ import annotations

import pytest

from gpuprov.core import docker_config as dc


def test_merge_keeps_user_keys_and_is_stable() -> None:
    current = {
        "insecure-registries": ["10.0.0.0/24"],
        "log-opts": {"max-size": "10m"},
        "runtimes": {"custom": {"path": "/usr/bin/custom"}},
    }
    merged = dc.merge_nvidia_runtime(current, "nvidia-container-runtime")
    assert merged["insecure-registries"] == ["10.0.0.0/24"]
    assert merged["log-opts"] == {"max-size": "10m"}
    assert merged["runtimes"]["custom"] == {"path": "/usr/bin/custom"}
    assert merged["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    assert "default-runtime" not in merged
    assert dc.merge_nvidia_runtime(merged, "nvidia-container-runtime") == merged
    assert "runtimes" not in current or "nvidia" not in current["runtimes"]


def test_merge_keeps_runtime_args_and_sets_default_on_request() -> None:
    current = {"runtimes": {"nvidia": {"path": "old", "runtimeArgs": ["--debug"]}}}
    merged = dc.merge_nvidia_runtime(current, "nvidia-container-runtime", set_default=True)
    assert merged["runtimes"]["nvidia"] == {
        "path": "nvidia-container-runtime",
        "runtimeArgs": ["--debug"],
        "args": [],
    }
    assert merged["default-runtime"] == "nvidia"


@pytest.mark.parametrize("text", ["{broken", "[]", '"x"'])
def test_unreadable_daemon_json_is_refused(text) -> None:
    with pytest.raises(dc.DaemonJsonError):
        dc.load(text)
    assert dc.load(None) == {} and dc.load("  ") == {}


def test_restart_needed_compares_with_the_running_engine() -> None:
    configured = dc.merge_nvidia_runtime({}, "nvidia-container-runtime")
    assert dc.restart_needed(configured, {"Runtimes": {"runc": {}}})
    assert not dc.restart_needed(configured, {"Runtimes": {"runc": {}, "nvidia": {}}})
    default = dc.merge_nvidia_runtime({}, "x", set_default=True)
    assert dc.restart_needed(default, {"Runtimes": {"nvidia": {}}, "DefaultRuntime": "runc"})
    assert not dc.restart_needed(configured, None)
