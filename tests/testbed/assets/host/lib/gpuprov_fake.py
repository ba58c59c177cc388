"""Fake NVIDIA driver and container toolkit for gpuprov test hosts (python3 stdlib only).

There is no GPU in the test bed, so these stand in for NVIDIA's binaries: they
replay real `nvidia-smi` captures and claim the versions the host's config asks
for. The config is a JSON file (see testbed's package docstring for its keys);
the entrypoint calls `setup` at every boot so a config change shows on restart.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

CONFIG = Path(os.environ.get("GPUPROV_FAKE_CONFIG", "/etc/gpuprov-fake/config.json"))
FIXTURES = Path(os.environ.get("GPUPROV_FAKE_FIXTURES", "/usr/share/gpuprov-fake/nvidia-smi"))
LOG_DIR = Path(os.environ.get("GPUPROV_FAKE_LOG_DIR", "/var/log/gpuprov-fake"))
FAKE_BIN = Path("/opt/gpuprov-fake/bin")
INSTALL_DIR = Path("/usr/bin")
DAEMON_JSON = Path("/etc/docker/daemon.json")
# Faults a test injects on a running host (written over SSH, read on every call):
# {"query_gpu": {"ecc.errors.uncorrected.volatile.total": "2", ...}} overrides
# those --query-gpu fields on every GPU, since no real capture shows a faulty GPU;
# {"hang_seconds": 60} makes every nvidia-smi call block that long first.
FAULTS = Path(os.environ.get("GPUPROV_FAKE_FAULTS", "/etc/gpuprov-fake/faults.json"))
DEV = Path("/dev")

DRIVER_TOOLS = ("nvidia-smi",)
TOOLKIT_TOOLS = (
    "nvidia-ctk",
    "nvidia-container-cli",
    "nvidia-container-runtime-hook",
    "nvidia-container-runtime",
)

NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)
MISMATCH = "Failed to initialize NVML: Driver/library version mismatch"
SECTION_RULE = "#" * 80
# gpuprov's read of the GPU compute processes (gpuprov.core.nvidia.COMPUTE_APPS_COMMAND),
# answered from the config's compute_pids.
COMPUTE_APPS = (
    "--query-compute-apps=timestamp,gpu_name,gpu_bus_id,gpu_serial,gpu_uuid,pid,process_name,"
    "used_gpu_memory --format=csv"
)


def load_config() -> dict:
    return json.loads(CONFIG.read_text())


def load_faults() -> dict:
    return json.loads(FAULTS.read_text()) if FAULTS.exists() else {}


# ---------------------------------------------------------------- captures


class Capture:
    """One capture file: sections keyed by the exact nvidia-smi command line."""

    def __init__(self, path: Path, phase: str = "idle") -> None:
        self.path = path
        self.sections: dict[str, str] = {}
        # Every section by its run ("idle", "load", "capabilities") and command.
        self.runs: dict[tuple[str, str], str] = {}
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i] != SECTION_RULE:
                i += 1
                continue
            header_end = i + 1
            while header_end < len(lines) and lines[header_end] != SECTION_RULE:
                header_end += 1
            header = lines[i + 1 : header_end]
            body_end = header_end + 1
            while body_end < len(lines) and lines[body_end] != SECTION_RULE:
                body_end += 1
            label = header[0][2:] if header else ""
            commands = [
                h[len("# $ nvidia-smi") :].strip() for h in header if h.startswith("# $ nvidia-smi")
            ]
            body = "\n".join(lines[header_end + 1 : body_end]).strip("\n") + "\n"
            # Captures hold idle and load runs of the same command: keep the phase asked for.
            for command in commands:
                if command not in self.sections or label.startswith(phase):
                    self.sections[command] = body
                self.runs[(label.split(" ::", 1)[0], command)] = body
            i = body_end
        version = self.sections.get("--version", "")
        match = re.search(r"DRIVER version\s*:\s*(\S+)", version)
        self.driver_version = match.group(1) if match else path.stem.rsplit("__", 1)[-1]
        match = re.search(r"CUDA Version\s*:\s*(\S+)", version)
        self.cuda_version = match.group(1) if match else None

    def query_table(self) -> tuple[list[str], list[list[str]]]:
        """Header fields and rows of the full `--query-gpu` capture."""
        for command, body in self.sections.items():
            if command.startswith("--query-gpu="):
                rows = list(csv.reader(body.strip().splitlines(), skipinitialspace=True))
                return rows[0], rows[1:]
        return [], []

    def aliases(self) -> dict[str, str]:
        """`"name" or "gpu_name"` lines of --help-query-gpu: every alias to its first name."""
        names: dict[str, str] = {}
        for line in self.sections.get("--help-query-gpu", "").splitlines():
            if line.startswith('"'):
                found = re.findall(r'"([^"]+)"', line.split(" or ", 1)[0] + " or " + line)
                for alias in found:
                    names.setdefault(alias, found[0])
        return names

    def gpus(self) -> list[dict[str, str]]:
        """GPUs as -L lists them, with their MIG devices' UUIDs."""
        gpus: list[dict[str, str]] = []
        for line in self.sections.get("-L", "").splitlines():
            gpu = re.match(r"GPU (\d+): (.+) \(UUID: (\S+)\)", line)
            mig = re.search(r"\(UUID: (MIG-\S+)\)", line)
            if gpu:
                gpus.append(
                    {"index": gpu.group(1), "name": gpu.group(2), "uuid": gpu.group(3), "migs": ""}
                )
            elif mig and gpus:
                gpus[-1]["migs"] += mig.group(1) + " "
        return gpus


class Driver:
    """The driver a host claims: a capture, with versions rewritten as configured."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.capture = Capture(
            FIXTURES / "captures" / config["capture"], config.get("phase", "idle")
        )
        self.version = config.get("driver_version") or self.capture.driver_version
        self.cuda_version = config.get("cuda_version") or self.capture.cuda_version

    def rewrite(self, text: str) -> str:
        """Claim the configured driver and CUDA versions wherever the capture shows its own."""
        old = self.capture.driver_version
        if self.version != old:
            old_nvml = ".".join(old.split(".")[:2])
            new_nvml = ".".join(self.version.split(".")[:2])
            text = re.sub(
                r"(NVML version\s*:\s*)" + re.escape(old_nvml) + r"\b",
                lambda m: m.group(1) + new_nvml,
                text,
            )
            text = _replace_aligned(
                r"(?<![\d.])" + re.escape(old) + r"(?![\d.])", self.version, text
            )
        if self.cuda_version and self.cuda_version != self.capture.cuda_version:
            text = _replace_aligned(r"(?<=CUDA Version: )\S+", self.cuda_version, text)
            text = re.sub(
                r"(CUDA Version\s*:\s*)\S+", lambda m: m.group(1) + self.cuda_version, text
            )
        return text


def _replace_aligned(pattern: str, new: str, text: str) -> str:
    """Replace, taking or giving back padding spaces so nvidia-smi's table borders stay put."""

    def sub(match: re.Match) -> str:
        spaces = match.group("pad")
        grow = len(new) - (len(match.group(0)) - len(spaces))
        if spaces:
            spaces = " " * max(1, len(spaces) - grow)
        return new + spaces

    return re.sub(f"{pattern}(?P<pad> *)", sub, text)


def driver_or_exit(config: dict, prog: str) -> Driver:
    """The loaded driver, or the error and exit status a real tool gives without one."""
    if config.get("driver_mismatch"):
        if prog == "nvidia-smi":
            print(MISMATCH)
            sys.exit(18)
        print(
            f"{prog}: initialization error: nvml error: driver/library version mismatch",
            file=sys.stderr,
        )
        sys.exit(1)
    if not config.get("capture"):
        if prog == "nvidia-smi":
            print(NO_DRIVER)
            sys.exit(9)
        print(f"{prog}: initialization error: nvml error: driver not loaded", file=sys.stderr)
        sys.exit(1)
    return Driver(config)


# ---------------------------------------------------------------- nvidia-smi


def _options(args: list[str]) -> dict[str, str]:
    """`--opt=value`, `--opt value` and `-i N` as one mapping."""
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg in ("--query-gpu", "--format", "-i", "--id") and i + 1 < len(args):
            options[arg] = args[i + 1]
            i += 1
        else:
            options[arg] = ""
        i += 1
    return options


def _query_gpu(driver: Driver, options: dict[str, str]) -> int:
    fields = [f.strip() for f in options["--query-gpu"].split(",") if f.strip()]
    formats = options.get("--format", "").split(",")
    if "csv" not in formats:
        print('"--format" must be specified with "--query-gpu".')
        return 2
    header, rows = driver.capture.query_table()
    names = [h.split(" [", 1)[0] for h in header]
    aliases = driver.capture.aliases()
    columns = []
    for field in fields:
        name = aliases.get(field, field)
        if name not in names:
            print(f'Field "{field}" is not a valid field to query.')
            return 2
        columns.append(names.index(name))
    wanted = options.get("-i", options.get("--id"))
    if wanted is not None and "index" in names:
        rows = [r for r in rows if r[names.index("index")] in wanted.split(",")]
    overrides = {aliases.get(k, k): str(v) for k, v in load_faults().get("query_gpu", {}).items()}
    rows = [[overrides.get(names[i], value) for i, value in enumerate(row)] for row in rows]
    out = []
    if "noheader" not in formats:
        out.append(", ".join(header[c] for c in columns))
    for row in rows:
        values = []
        for c in columns:
            value = row[c]
            if names[c] == "timestamp":
                value = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
            unit = re.search(r"\[(.+)\]$", header[c])
            if "nounits" in formats and unit and value.endswith(" " + unit.group(1)):
                value = value[: -len(unit.group(1)) - 1]
            values.append(value)
        out.append(", ".join(values))
    print(driver.rewrite("\n".join(out)))
    return 0


def _compute_apps(driver: Driver, pids: list[int]) -> int:
    """The capture's load row once per configured pid, nothing else: the bed runs no CUDA
    process, whatever the capture's own runs showed (a desktop's compositor, a benchmark)."""
    header, *rows = driver.capture.runs[("load", COMPUTE_APPS)].strip("\n").splitlines()
    if pids and not rows:
        print(f"(gpuprov fake: {driver.capture.path.name} has no load row)", file=sys.stderr)
        return 2
    column = [cell.strip() for cell in header.split(", ")].index("pid")
    out = [header]
    for pid in pids:
        cells = rows[0].split(", ")
        cells[column] = str(pid)
        out.append(", ".join(cells))
    print("\n".join(out))
    return 0


def nvidia_smi(args: list[str]) -> int:
    config = load_config()
    driver = driver_or_exit(config, "nvidia-smi")
    # A wedged GPU: nvidia-smi blocks in the driver and never answers.
    hang = load_faults().get("hang_seconds")
    if hang:
        time.sleep(float(hang))
    options = _options(args)
    command = " ".join(args)
    if command == COMPUTE_APPS and ("load", command) in driver.capture.runs:
        return _compute_apps(driver, config.get("compute_pids") or [])
    if command in driver.capture.sections:
        sys.stdout.write(driver.rewrite(driver.capture.sections[command]))
        return 0
    if "--query-gpu" in options:
        return _query_gpu(driver, options)
    print("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
    print(
        f"(gpuprov fake: {driver.capture.path.name} has no section for: nvidia-smi {command})",
        file=sys.stderr,
    )
    return 2


# ---------------------------------------------------------------- toolkit


def nvidia_ctk(args: list[str]) -> int:
    config = load_config()
    if args[:1] in (["--version"], ["-v"]):
        print(f"NVIDIA Container Toolkit CLI version {config['toolkit_version']}")
        print("commit: 0000000000000000000000000000000000000000")
        return 0
    if args[:2] == ["runtime", "configure"]:
        options = _options(args[2:])
        if options.get("--runtime", "docker") != "docker":
            print(f"ERRO[0000] unrecognized runtime '{options['--runtime']}'", file=sys.stderr)
            return 1
        path = Path(options.get("--config") or DAEMON_JSON)
        print(f"INFO[0000] Loading config from {path}", file=sys.stderr)
        daemon = json.loads(path.read_text()) if path.exists() else {}
        daemon.setdefault("runtimes", {})["nvidia"] = {
            "args": [],
            "path": "nvidia-container-runtime",
        }
        if "--set-as-default" in options:
            daemon["default-runtime"] = "nvidia"
        path.write_text(json.dumps(daemon, indent=4) + "\n")
        print(f"INFO[0000] Wrote updated config to {path}", file=sys.stderr)
        print("INFO[0000] It is recommended that docker daemon be restarted.", file=sys.stderr)
        return 0
    print(f"gpuprov fake nvidia-ctk: unsupported arguments: {' '.join(args)}", file=sys.stderr)
    return 1


def nvidia_container_cli(args: list[str]) -> int:
    config = load_config()
    if "--version" in args:
        version = config["toolkit_version"]
        print(
            f"cli-version: {version}\nlib-version: {version}\n"
            "build date: 2025-05-30T13:47+00:00\n"
            "build revision: 0000000000000000000000000000000000000000\n"
            "build compiler: x86_64-linux-gnu-gcc-7 7.5.0\nbuild platform: x86_64"
        )
        return 0
    if args[-1:] == ["info"]:
        driver = driver_or_exit(config, "nvidia-container-cli")
        header, rows = driver.capture.query_table()
        names = [h.split(" [", 1)[0] for h in header]
        print(f"NVRM version:   {driver.version}\nCUDA version:   {driver.cuda_version}\n")
        for gpu, row in zip(driver.capture.gpus(), rows or [[]] * 64, strict=False):

            def field(name: str, row: list[str] = row) -> str:
                return row[names.index(name)] if name in names and row else "N/A"

            print(
                f"Device Index:   {gpu['index']}\nDevice Minor:   {gpu['index']}\n"
                f"Model:          {gpu['name']}\nBrand:          Nvidia\n"
                f"GPU UUID:       {gpu['uuid']}\nBus Location:   {field('pci.bus_id')}\n"
                f"Architecture:   {field('compute_cap')}\n"
            )
        return 0
    print(
        f"gpuprov fake nvidia-container-cli: unsupported arguments: {' '.join(args)}",
        file=sys.stderr,
    )
    return 1


def _log(name: str, record: dict) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    record = {"time": datetime.datetime.now().isoformat(timespec="milliseconds"), **record}
    with (LOG_DIR / name).open("a") as log:
        log.write(json.dumps(record) + "\n")


def runtime_hook(args: list[str]) -> int:
    """OCI prestart hook: log which GPUs the container asked for, refuse unknown ones.

    dockerd calls it for `--gpus`, having put NVIDIA_VISIBLE_DEVICES in the
    container's environment; runc passes the container state on stdin.
    """
    if args[:1] != ["prestart"]:
        return 0
    state = json.load(sys.stdin)
    spec = json.loads((Path(state["bundle"]) / "config.json").read_text())
    env = dict(e.split("=", 1) for e in spec.get("process", {}).get("env", []) if "=" in e)
    requested = env.get("NVIDIA_VISIBLE_DEVICES", "")
    _log(
        "hook.log",
        {
            "container_id": state.get("id"),
            "args": args,
            "NVIDIA_VISIBLE_DEVICES": requested,
            "NVIDIA_DRIVER_CAPABILITIES": env.get("NVIDIA_DRIVER_CAPABILITIES", ""),
        },
    )
    driver = driver_or_exit(load_config(), "nvidia-container-cli")
    known = set()
    for gpu in driver.capture.gpus():
        known |= {gpu["index"], gpu["uuid"], *gpu["migs"].split()}
    for device in requested.split(","):
        if device not in ("", "all", "none", "void") and device not in known:
            print(f"nvidia-container-cli: device error: {device}: unknown device", file=sys.stderr)
            return 1
    return 0


def container_runtime(args: list[str]) -> int:
    """`nvidia` runtime for daemon.json: log the call, then be runc."""
    _log("runtime.log", {"args": args})
    os.execvp("runc", ["runc", *args])
    return 1


# ---------------------------------------------------------------- boot


def setup() -> int:
    """Install the fakes this host's config asks for and write its daemon.json."""
    config = load_config()
    tools = list(DRIVER_TOOLS) + (list(TOOLKIT_TOOLS) if config.get("toolkit_version") else [])
    for tool in (*DRIVER_TOOLS, *TOOLKIT_TOOLS):
        link = INSTALL_DIR / tool
        if link.is_symlink() or link.exists():
            link.unlink()
        if tool in tools:
            link.symlink_to(FAKE_BIN / tool)
    _device_nodes(config)
    # Written once: what nvidia-ctk or a playbook puts in it later survives a restart.
    if not DAEMON_JSON.exists():
        daemon: dict = {"insecure-registries": config.get("insecure_registries", [])}
        if config.get("nvidia_runtime") and config.get("toolkit_version"):
            daemon["runtimes"] = {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}
        DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
        DAEMON_JSON.write_text(json.dumps(daemon, indent=4) + "\n")
    return 0


def _device_nodes(config: dict) -> None:
    """The nodes a loaded driver creates (nvidia-modprobe), so checks for them see a driver.

    Made at boot from the capture's GPU count; a test removes one (e.g.
    /dev/nvidia-uvm) over SSH to fake a half-initialised driver.
    """
    nodes = {}
    if config.get("capture") and not config.get("driver_mismatch"):
        gpus = Capture(FIXTURES / "captures" / config["capture"]).gpus()
        nodes = {f"nvidia{g['index']}": (195, int(g["index"])) for g in gpus}
        nodes["nvidiactl"] = (195, 255)
        nodes.update({"nvidia-uvm": (235, 0), "nvidia-uvm-tools": (235, 1)})
    for old in DEV.glob("nvidia*"):
        if old.name not in nodes:
            old.unlink()
    for name, (major, minor) in nodes.items():
        if not (DEV / name).exists():
            os.mknod(DEV / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))


COMMANDS = {
    "nvidia-smi": nvidia_smi,
    "nvidia-ctk": nvidia_ctk,
    "nvidia-container-cli": nvidia_container_cli,
    "nvidia-container-runtime-hook": runtime_hook,
    "nvidia-container-runtime": container_runtime,
}


def main() -> None:
    prog = Path(sys.argv[0]).name
    if prog == "gpuprov_fake.py":
        sys.exit(setup() if sys.argv[1:] == ["setup"] else 2)
    sys.exit(COMMANDS[prog](sys.argv[1:]))


if __name__ == "__main__":
    main()
