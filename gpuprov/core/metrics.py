"""gpuprov.prom: what the last runs found on a host, for node_exporter's textfile collector.

One file per host, in sections that each play rewrites on its own: ``verify``
(every gate's status), ``workspaces`` (one info series per workspace, and
whether it runs the pin) and ``rollout`` (how the last rollout ended). There are
no timestamps: a rerun that finds the same writes the same bytes, so it reports
no change, and node_exporter's ``node_textfile_mtime_seconds`` says when a
section last changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FILE_NAME = "gpuprov.prom"
# Each section starts with this comment line (Prometheus reads other comments as nothing).
SECTION_MARK = "# gpuprov section: "
VERIFY_STATUSES = ("ok", "warn", "fail", "n/a")
ROLLOUT_OUTCOMES = ("rolled_out", "rolled_back", "rollback_failed", "stopped")


class MetricsError(ValueError):
    """Input the metrics cannot describe (an unknown section or outcome)."""


@dataclass(frozen=True)
class Family:
    """One metric family: its HELP, its samples (labels, value), all gauges."""

    name: str
    help: str
    samples: tuple[tuple[tuple[tuple[str, str], ...], float], ...]

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        for labels, value in self.samples:
            text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
            series = f"{self.name}{{{text}}}" if text else self.name
            out.append(f"{series} {_number(value)}")
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _family(
    name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> Family:
    return Family(
        name, help_text, tuple((tuple(labels.items()), value) for labels, value in samples)
    )


def verify_families(report: Mapping[str, Any]) -> list[Family]:
    """From host_verify's JSON report: each gate's status, one series per possible status."""
    checks = [(str(c["name"]), str(c["status"])) for c in report.get("checks", [])]
    return [
        _family(
            "gpuprov_verify_check_status",
            "1 for the status of each host gate at the last verification, 0 for the others.",
            (
                ({"check": name, "status": status}, 1 if found == status else 0)
                for name, found in checks
                for status in VERIFY_STATUSES
            ),
        ),
        _family(
            "gpuprov_verify_failed_checks",
            "How many host gates failed at the last verification.",
            [({}, sum(1 for _, found in checks if found == "fail"))],
        ),
    ]


def workspace_families(plan: Sequence[Mapping[str, Any]], image: str, pinned: str) -> list[Family]:
    """One info series per planned workspace, and whether each runs the pinned image."""
    ordered = sorted(plan, key=lambda w: (str(w["user"]), str(w["kind"])))
    ids = [({"user": str(w["user"]), "kind": str(w["kind"])}, w) for w in ordered]
    return [
        _family(
            "gpuprov_workspace_info",
            "A workspace gpuprov started: its user, kind, host port and image.",
            (({**key, "port": str(w["port"]), "image": image}, 1) for key, w in ids),
        ),
        _family(
            "gpuprov_workspace_on_pin",
            "1 when the workspace runs the pinned team image, 0 when it runs another.",
            ((key, 1 if pinned and image == pinned else 0) for key, _ in ids),
        ),
    ]


def rollout_outcome(previous_image: str, rollback_failure: str | None = None) -> str:
    """How a rollout that stopped on a host ended: back on the previous image, the way
    back failing too, or nothing to go back to (no workspace ran before)."""
    if not previous_image:
        return "stopped"
    return "rollback_failed" if rollback_failure else "rolled_back"


def rollout_families(outcome: str, image: str) -> list[Family]:
    """How the last rollout on the host ended, one series per possible outcome."""
    if outcome not in ROLLOUT_OUTCOMES:
        raise MetricsError(f"unknown rollout outcome {outcome!r} (one of {ROLLOUT_OUTCOMES})")
    return [
        _family(
            "gpuprov_rollout_last_outcome",
            "1 for how the last rollout on the host ended, 0 for the other outcomes; image is "
            "what the workspaces run after it.",
            (({"outcome": o, "image": image}, 1 if o == outcome else 0) for o in ROLLOUT_OUTCOMES),
        )
    ]


def section_text(name: str, families: Sequence[Family]) -> str:
    return "\n".join([SECTION_MARK + name, *(line for f in families for line in f.lines())]) + "\n"


def sections(text: str) -> dict[str, str]:
    """The sections of an existing file by name (what precedes the first mark is dropped)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SECTION_MARK):
            current = found.setdefault(line[len(SECTION_MARK) :].strip(), [])
            current.append(line)
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in found.items()}


def merge(existing: str, name: str, families: Sequence[Family]) -> str:
    """The file with section ``name`` replaced, the others kept, sections in name order."""
    kept = sections(existing)
    kept[name] = section_text(name, families)
    return "".join(kept[key] for key in sorted(kept))
