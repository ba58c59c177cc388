"""What gpuprov makes of the drift inspection each running workspace answered: its
state, the rows of `gpuprov audit --workspaces`, the drift column of `gpuprov status`,
and the exit status. A workspace whose inspection did not answer, or answered
something else than a report, is unknown, never ok."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .drift import DRIFT, OK, UNKNOWN, Finding, report_from_dict
from .text_table import text_table

# The exit statuses of `gpuprov status`: unknown is what it says of an unreachable host.
EXIT_OK, EXIT_DRIFT, EXIT_UNKNOWN = 0, 1, 2
ROOT_REFUSED = 126
TIMED_OUT = 124
NO_ANSWER = "no answer from the drift inspection (the host's probe ended before it did)"


@dataclass(frozen=True)
class WorkspaceDrift:
    """One workspace's drift, or why it is unknown."""

    workspace: str
    user: str
    state: str
    findings: tuple[Finding, ...] = ()
    unread: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read(workspace: str, user: str, output: str, rc: int | None) -> WorkspaceDrift:
    """A workspace's answer: the report the inspection printed last, or unknown with
    what was said instead (python3 missing, the container gone, a timeout)."""
    said = output.strip()
    if rc == TIMED_OUT:
        return WorkspaceDrift(workspace, user, UNKNOWN, error=f"timed out: {said[-300:]}".strip())
    if rc == 0 and said:
        try:
            report = report_from_dict(json.loads(said.splitlines()[-1]))
        except ValueError:
            pass
        else:
            return WorkspaceDrift(
                workspace, user, report.state, report.findings, report.unread, None
            )
    why = said.splitlines()[-1][:300] if said else f"exit status {rc}"
    return WorkspaceDrift(workspace, user, UNKNOWN, error=f"not inspected: {why}")


def for_workspaces(
    listed: Iterable[tuple[str, str]], answered: Mapping[str, WorkspaceDrift]
) -> tuple[WorkspaceDrift, ...]:
    """Every listed (user, container) with its answer, unknown where none came; and any
    workspace that answered without being listed (started in between)."""
    rows = [answered.get(name) or WorkspaceDrift(name, user, UNKNOWN, error=NO_ANSWER)
            for user, name in listed]  # fmt: skip
    seen = {row.workspace for row in rows}
    return (*rows, *(answered[name] for name in sorted(answered) if name not in seen))


def summary(drifts: Iterable[WorkspaceDrift], docker_up: bool) -> str:
    """The drift column of a host: '-' without workspaces, 'ok', or what needs a look."""
    if not docker_up:
        return UNKNOWN
    states = [d.state for d in drifts]
    if not states:
        return "-"
    if all(state == OK for state in states):
        return OK
    return ", ".join(
        f"{states.count(state)} {state}" for state in (DRIFT, UNKNOWN) if state in states
    )


# --- `gpuprov audit --workspaces` -------------------------------------------------------


def host_rows(
    host: str, drifts: Iterable[WorkspaceDrift] | None, error: str | None
) -> list[dict[str, Any]]:
    """The rows of one host; a host that was not read is one unknown row with why."""
    if drifts is None:
        return [{"host": host, "user": None, "workspace": None, "state": UNKNOWN,
                 "findings": [], "unread": [], "error": error or "not reached"}]  # fmt: skip
    return [{"host": host, **drift.to_dict()} for drift in drifts]


def exit_code(rows: Iterable[Mapping[str, Any]]) -> int:
    """0: no drift; 1: drift found; 2: a workspace or host could not be inspected."""
    states = {row["state"] for row in rows}
    if UNKNOWN in states:
        return EXIT_UNKNOWN
    return EXIT_DRIFT if DRIFT in states else EXIT_OK


def _cell(row: Mapping[str, Any]) -> str:
    if row["state"] != DRIFT:
        return row["state"]
    kinds = sorted({finding["kind"] for finding in row["findings"]})
    return f"{len(row['findings'])} ({', '.join(kinds)})"


def render(rows: list[Mapping[str, Any]]) -> str:
    """The table: host, user, workspace, findings; each finding and its fix, and why a
    workspace is unknown, under its row."""
    if not rows:
        return "no running workspaces"
    ordered = sorted(rows, key=lambda r: (r["host"], r["user"] or "", r["workspace"] or ""))
    table = [(r["host"], r["user"] or "-", r["workspace"] or "-", _cell(r)) for r in ordered]
    lines = text_table(("host", "user", "workspace", "findings"), table).splitlines()
    out = [lines[0]]
    for row, line in zip(ordered, lines[1:], strict=True):
        out.append(line)
        for finding in row["findings"]:
            out.append(f"  ! {finding['kind']} {finding['package']}: {finding['detail']}")
            out.append(f"      where: {finding['where']}")
            out.append(f"      fix: {finding['fix']}")
        out += [f"  ? {what}" for what in row["unread"]]
        if row["error"]:
            out.append(f"  ? {row['error']}")
    return "\n".join(out)


def preflight_lines(host: str, answers: Iterable[Mapping[str, Any]]) -> list[str]:
    """What a rollout's pre-flight says of each running workspace's drift (it does not block:
    the drift is the user's, and moving the workspace does not make it worse)."""
    lines = []
    for answer in answers:
        name = answer.get("item") or "?"
        drift = read(name, "", answer.get("stdout") or answer.get("msg") or "", answer.get("rc"))
        if drift.state == DRIFT:
            found = "; ".join(f"{f.kind} {f.package} ({f.where}): {f.fix}" for f in drift.findings)
            lines.append(f"{host} {name}: drift: {found}")
        elif drift.state == UNKNOWN:
            lines.append(f"{host} {name}: unknown: {drift.error or ', '.join(drift.unread)}")
        else:
            lines.append(f"{host} {name}: ok")
    return lines or [f"{host}: no workspace runs"]
