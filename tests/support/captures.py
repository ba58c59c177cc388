"""Real `nvidia-smi` output captured on GPU hosts (tests/fixtures/nvidia-smi), read the way
the captures are written: a ruled header naming the command, then its output."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi"
CAPTURES = sorted((FIXTURES / "captures").glob("*.txt"))
DRIVER_610 = FIXTURES / "driver-610"
H100 = FIXTURES / "captures" / "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
MIG = FIXTURES / "captures" / "linux-x86_64__nvidia-h100-mig__590.48.01.txt"
L40S = FIXTURES / "captures" / "linux-x86_64__nvidia-l40s__595.80.txt"
RTX_4080 = FIXTURES / "captures" / "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt"
BAR = "#" * 80


def sections(path: Path) -> list[tuple[str, str]]:
    """(command, body) for each `# $ nvidia-smi ...` section of a capture (first = idle)."""
    lines = path.read_text().splitlines()
    starts = [
        i
        for i in range(len(lines) - 3)
        if lines[i] == BAR and lines[i + 2].startswith("# $ ") and lines[i + 3] == BAR
    ]
    found = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        found.append((lines[start + 2][len("# $ ") :].strip(), "\n".join(lines[start + 4 : end])))
    return found


def section(path: Path, command: str) -> list[str]:
    """The bodies of every section of exactly ``command``."""
    return [body for cmd, body in sections(path) if cmd == command]


def first_section(path: Path, command_prefix: str) -> str:
    """The first section whose command starts with ``command_prefix``."""
    return next(body for cmd, body in sections(path) if cmd.startswith(command_prefix))
