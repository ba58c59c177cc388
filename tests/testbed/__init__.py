"""gpuprov's integration test bed: real Docker, a real registry, real SSH hosts, fake GPUs.

`TestBed(hosts).start()` (or `with TestBed(...) as bed`) brings up, all inside
the network namespace `gpuprov-tb` so nothing touches the machine's network:

- a private dockerd (`bed.docker_env()`), data root cached in
  `${GPUPROV_CACHE:-/var/cache/gpuprov}/testbed/docker` so images survive runs;
- a local plain-HTTP registry at `bed.registry` (10.210.0.1:5000) on the hosts'
  network gateway; every engine lists 10.210.0.0/24 as insecure;
- one container per `HostSpec` (10.210.0.11, .12, ...): its own hostname,
  filesystem, sshd (root by the run's key only) and Docker engine (started by
  `service docker start`, so `service docker restart` works);
- images built offline from debootstrap: `bed.base_image`
  (`gpuprov-testbed/base:bookworm`: python3, venv, pip, requests, sshd, tini,
  curl) for other tests to build FROM, and the host image.

Fake NVIDIA tools on each host read `/etc/gpuprov-fake/config.json` (written
from the HostSpec; keys are its fields, `name` as `hostname`, plus
`insecure_registries`):

- `nvidia-smi` replays sections of `tests/fixtures/nvidia-smi/captures/<capture>`
  whose `# $ nvidia-smi ARGS` line matches its arguments exactly; any other
  `--query-gpu=F,... --format=csv[,noheader][,nounits]` is answered from the
  capture's full query-gpu table (aliases from its --help-query-gpu).
  `driver_version`/`cuda_version` are claimed in place of
  the capture's. capture null: "NVIDIA-SMI has failed ..." exit 9;
  driver_mismatch: "Failed to initialize NVML: Driver/library version mismatch" exit 18.
  `--query-compute-apps` (gpuprov's exact command) answers the capture's
  header and, per pid in `compute_pids`, its load run's first row with that pid:
  the GPU compute processes a test makes up (the bed can run no CUDA process).
- with `toolkit_version` set, `nvidia-ctk` (`--version`, `runtime configure
  --runtime=docker [--set-as-default]`), `nvidia-container-cli` (`--version`,
  `info`), `nvidia-container-runtime` (logs, then runc) and
  `nvidia-container-runtime-hook` are in /usr/bin; dockerd finds the hook at
  boot, so `--gpus` works. The hook logs each request (NVIDIA_VISIBLE_DEVICES)
  as a JSON line to /var/log/gpuprov-fake/hook.log, and fails like the real one
  for a GPU index/UUID the capture does not have or when there is no driver.
  With toolkit_version null they are absent and `--gpus` fails.
"""

from .bed import TestBed
from .hosts import H100_CAPTURE, L40S_CAPTURE, HostSpec
from .images import BASE_IMAGE
from .lock import BedBusy
from .procs import CommandError

__all__ = [
    "BASE_IMAGE",
    "H100_CAPTURE",
    "L40S_CAPTURE",
    "BedBusy",
    "CommandError",
    "HostSpec",
    "TestBed",
]
