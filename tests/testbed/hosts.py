"""What one SSH test host claims to be: its GPU capture, driver and toolkit."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .paths import NVIDIA_SMI_FIXTURES

H100_CAPTURE = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
L40S_CAPTURE = "linux-x86_64__nvidia-l40s__595.80.txt"


@dataclass
class HostSpec:
    """One test host. Every field but `name` goes to the host's fake-tool config.

    capture: file in tests/fixtures/nvidia-smi/captures replayed by nvidia-smi;
        None = driver not loaded (nvidia-smi exits 9, `--gpus` fails).
    driver_version / cuda_version: claimed instead of the capture's own.
    toolkit_version: NVIDIA Container Toolkit version; None = its binaries are
        absent, so dockerd has no GPU hook and `--gpus` fails as on a bare server.
    driver_mismatch: NVML "Driver/library version mismatch" (nvidia-smi exits 18).
    phase: "idle" or "load": which of the capture's two runs to replay.
    nvidia_runtime: daemon.json already has the `nvidia` runtime, as after
        `nvidia-ctk runtime configure --runtime=docker`.
    compute_pids: host pids nvidia-smi --query-compute-apps reports as GPU compute
        processes (the capture's load row once per pid, pid replaced); empty = none,
        in either phase. No CUDA process can exist on the bed, so a test names one
        of a container's processes here to make it hold a GPU.
    """

    name: str
    capture: str | None = H100_CAPTURE
    driver_version: str | None = None
    cuda_version: str | None = None
    toolkit_version: str | None = "1.19.1"
    driver_mismatch: bool = False
    phase: str = "idle"
    nvidia_runtime: bool = False
    compute_pids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Fail at construction, not as an odd nvidia-smi error deep inside a playbook run.
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", self.name):
            raise ValueError(f"host name {self.name!r}: use a short lowercase hostname")
        if self.capture and not (NVIDIA_SMI_FIXTURES / "captures" / self.capture).is_file():
            raise ValueError(f"host {self.name}: no capture {self.capture!r}")
        if self.phase not in ("idle", "load"):
            raise ValueError(f"host {self.name}: phase must be 'idle' or 'load'")
        if not all(isinstance(pid, int) and pid > 0 for pid in self.compute_pids):
            raise ValueError(f"host {self.name}: compute_pids must be pids: {self.compute_pids}")

    def fake_config(self, insecure_registries: list[str]) -> dict:
        """The JSON the host's entrypoint and fake tools read."""
        config = asdict(self)
        config["hostname"] = config.pop("name")
        config["insecure_registries"] = insecure_registries
        return config
