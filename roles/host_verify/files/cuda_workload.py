"""gpuprov's GPU workload probe, run inside a team-image container with the host's GPUs.

nvidia-smi alone can pass on a broken stack (NVIDIA/gpu-operator#2685), so this
also runs a real CUDA operation, as NVIDIA's validator does. It never fails: it
prints one JSON line (marked "gpuprov_workload") that gpuprov.core.host_facts reads.
"""

import json
import subprocess

result = {"gpuprov_workload": 1}
try:
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=120)
    result["nvidia_smi_rc"] = proc.returncode
    result["nvidia_smi"] = (proc.stdout + proc.stderr).strip()[:1000]
except FileNotFoundError:
    # The NVIDIA runtime mounts nvidia-smi from the host; its absence is a finding.
    result["nvidia_smi_rc"] = 127
    result["nvidia_smi"] = "nvidia-smi: not found in the container (the runtime did not inject it)"
except subprocess.TimeoutExpired:
    result["nvidia_smi_rc"] = -1
    result["nvidia_smi"] = "nvidia-smi did not answer within 120 s"

try:
    import torch
except Exception as exc:  # any import failure is the finding, e.g. an ABI error
    result["torch_ok"] = False
    result["torch_error"] = f"import torch failed: {type(exc).__name__}: {exc}"
else:
    try:
        a = torch.randn(512, 512, device="cuda")
        b = (a @ a).sum().item()
        torch.cuda.synchronize()
        result["torch_ok"] = b == b  # NaN would mean a broken device
        result["device"] = torch.cuda.get_device_name(0)
        if not result["torch_ok"]:
            result["torch_error"] = "the matmul returned NaN"
    except Exception as exc:
        result["torch_ok"] = False
        result["torch_error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"

print(json.dumps(result))
