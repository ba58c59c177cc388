"""The ``gpuprov`` command: what Ansible is poor at, from the same core."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from typing import TYPE_CHECKING

from .core import image_pin, inventory, knowledge, plan, probe, rules, workspace_drift
from .core.text_table import text_table

if TYPE_CHECKING:
    # paramiko loads only for the commands that reach hosts.
    from . import fleet


def _load(args: argparse.Namespace) -> tuple[inventory.Inventory, list[str]]:
    """The inventory as Ansible reads it, and the hosts -l selects (all without -l)."""
    from .ansible_inventory import AnsibleInventory, Sources

    loaded = AnsibleInventory(
        Sources(
            inventory=args.inventory or [],
            vault_ids=args.vault_id or [],
            vault_password_files=args.vault_password_file or [],
            ask_vault_pass=args.ask_vault_pass,
            playbook_dir=args.playbook_dir,
        )
    )
    found = loaded.inventory()
    limit = getattr(args, "limit", None)
    selected = loaded.select(limit) if limit else sorted(found.hosts)
    return found, selected


def _print_findings(
    findings: list[inventory.Finding], source: str, warnings: list[inventory.Finding] = ()
) -> None:
    for warning in warnings:
        print(f"WARNING {warning}", file=sys.stderr)
    for finding in findings:
        print(f"ERROR {finding}", file=sys.stderr)
    if findings:
        print(f"{source}: {len(findings)} error(s); nothing was changed", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        found, _ = _load(args)
    except inventory.InventoryError as error:
        source, findings, warnings, fleet = (
            ", ".join(args.inventory or ["the inventory"]),
            error.findings,
            [],
            None,
        )
    else:
        source = found.source
        findings, warnings = rules.verdict(found, rules.check(found), args.strict)
        fleet = None if findings else plan.build(found)
    if args.json:
        print(json.dumps(_check_report(source, findings, warnings, fleet), indent=2))
    else:
        _print_findings(findings, source, warnings)
    if fleet is not None and not args.json:
        said = f", {len(warnings)} warning(s)" if warnings else ""
        print(
            f"{source}: ok ({len(fleet.hosts)} host(s), "
            f"{len({w.user for w in fleet.workspaces})} user(s), "
            f"{len(fleet.workspaces)} workspace(s){said})"
        )
    return 1 if findings else 0


def _check_report(
    source: str,
    findings: list[inventory.Finding],
    warnings: list[inventory.Finding],
    fleet: plan.Fleet | None,
) -> dict[str, object]:
    report: dict[str, object] = {
        "source": source,
        "ok": not findings,
        "errors": [f.as_dict() for f in findings],
        "warnings": [f.as_dict() for f in warnings],
    }
    if fleet is not None:
        report |= {
            "hosts": len(fleet.hosts),
            "users": len({w.user for w in fleet.workspaces}),
            "workspaces": len(fleet.workspaces),
        }
    return report


def cmd_plan(args: argparse.Namespace) -> int:
    found, selected = _load(args)
    workspaces = [w for w in rules.fleet(found).workspaces if w.host in selected]
    if args.json:
        print(json.dumps([asdict(w) for w in workspaces], indent=2, default=list))
        return 0
    rows = [
        (w.host, w.user, w.kind, str(w.port), w.bind_address, ",".join(w.gpus) or "-")
        for w in workspaces
    ]
    _table(("host", "user", "kind", "port", "address", "gpus"), rows)
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print(text_table(header, rows))


def _pin(args: argparse.Namespace) -> dict:
    found, _ = _load(args)
    pin = plan.team_value(found, "gpuprov_image")
    if pin is None:
        raise SystemExit(f"{found.source}: no gpuprov_image pin for the hosts (group_vars/all)")
    return pin.value


def cmd_audit(args: argparse.Namespace) -> int:
    if args.workspaces == bool(args.image):
        print("gpuprov audit: give an IMAGE or --workspaces (and not both)", file=sys.stderr)
        return 2
    if args.workspaces:
        return _audit_workspaces(args)
    from . import image_cli

    return image_cli.audit(args.image, _pin(args), args.json, args.docker_host)


def _audit_workspaces(args: argparse.Namespace) -> int:
    from . import fleet

    found, selected = _load(args)
    live = sys.stderr.isatty() and not args.json
    rows = fleet.audit_workspaces(
        fleet.targets(found, selected),
        timeout=args.timeout,
        deadline=args.deadline,
        on_progress=_progress if live else None,
    )
    if live:
        sys.stderr.write("\r\033[K")
    print(json.dumps({"workspaces": rows}, indent=2) if args.json else workspace_drift.render(rows))
    return workspace_drift.exit_code(rows)


def cmd_image_pin(args: argparse.Namespace) -> int:
    from . import image_cli

    return image_cli.pin(args.image, args.docker_host)


def _progress(state: fleet.Progress) -> None:
    slowest = state.slowest()
    waiting = f"; waiting on {slowest[0]} ({slowest[1]:.1f} s)" if slowest else ""
    sys.stderr.write(f"\r\033[K{state.done}/{state.total} answered{waiting}")
    sys.stderr.flush()


def cmd_status(args: argparse.Namespace) -> int:
    from . import fleet

    found, selected = _load(args)
    pin = plan.team_value(found, "gpuprov_image")
    pinned = image_pin.run_names(pin.value if pin else None)
    live = sys.stderr.isatty() and not args.json
    results = fleet.probe_all(
        fleet.targets(found, selected),
        timeout=args.timeout,
        deadline=args.deadline,
        on_progress=_progress if live else None,
        script=fleet.status_script(args.timeout),
    )
    if live:
        sys.stderr.write("\r\033[K")
    rows = [
        probe.host_report(
            r.target.name, r.status, r.error, r.timed_out, r.seconds, pinned, r.target.gpu_required
        )
        for r in results
    ]
    print(json.dumps({"hosts": rows}, indent=2) if args.json else probe.render(rows))
    return probe.exit_code(rows)


def cmd_facts(args: argparse.Namespace) -> int:
    found = knowledge.report()
    print(json.dumps(found, indent=2) if args.json else knowledge.render(found))
    return 0


def _version() -> str:
    try:
        return metadata.version("gpuprov")
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuprov", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gpuprov {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "-i",
            "--inventory",
            action="append",
            help="inventory source, as for ansible-playbook; may be repeated (default: "
            "ANSIBLE_INVENTORY or ansible.cfg's inventory)",
        )
        sub.add_argument("--vault-id", action="append", help="vault identity, as for Ansible")
        sub.add_argument(
            "--vault-password-file", action="append", help="vault password file, as for Ansible"
        )
        sub.add_argument(
            "-J", "--ask-vault-pass", action="store_true", help="ask for the vault password"
        )
        sub.add_argument(
            "--playbook-dir",
            help="also read group_vars/ and host_vars/ beside the playbooks in this directory",
        )
        sub.set_defaults(handler=handler)
        return sub

    def limit(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-l", "--limit", help="Ansible host pattern: hosts, groups, globs, ':&', ':!'"
        )

    check = add("check", cmd_check, "Validate an inventory without contacting any host.")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.add_argument(
        "--strict",
        action="store_true",
        help="treat warnings as errors (the inventory can ask for this: gpuprov_strict: true)",
    )
    status = add("status", cmd_status, "Probe every host at once over SSH (read-only).")
    limit(status)
    status.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds each host gets in all: connect, log in and run the probe (default 15)",
    )
    status.add_argument(
        "--deadline", type=float, help="seconds the whole run may take (default: no limit)"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    plan_command = add("plan", cmd_plan, "Show every workspace with its host, port and GPUs.")
    limit(plan_command)
    plan_command.add_argument("--json", action="store_true", help="print JSON")
    audit = add(
        "audit",
        cmd_audit,
        "Audit an image's packages and labels against the pin, or (--workspaces) the "
        "drift of every running workspace, inspected inside it as its user.",
    )
    audit.add_argument(
        "image", nargs="?", help="image name, reference@digest or ID (on the local engine)"
    )
    audit.add_argument(
        "--workspaces",
        action="store_true",
        help="audit the running workspaces of the inventory's hosts instead of an image: "
        "exit 0 clean, 1 drift, 2 a workspace or host could not be inspected",
    )
    limit(audit)
    audit.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="with --workspaces: seconds each host gets in all (default 60)",
    )
    audit.add_argument(
        "--deadline", type=float, help="with --workspaces: seconds the whole run may take"
    )
    audit.add_argument("--json", action="store_true", help="print JSON")
    audit.add_argument("-H", "--docker-host", help="Docker daemon (default: DOCKER_HOST)")
    facts = commands.add_parser(
        "facts",
        help="Print the driver, CUDA, PyTorch and toolkit tables the checks use, with sources.",
        description="Print the driver, CUDA, PyTorch and toolkit tables the checks use, "
        "with their sources and the date they were last checked.",
    )
    facts.add_argument("--json", action="store_true", help="print JSON")
    facts.set_defaults(handler=cmd_facts)
    pin = add("image", cmd_image_pin, "Print the pin (YAML) of a pushed gpuprov-built image.")
    pin.add_argument("action", choices=["pin"], help="pin: print the pin to commit")
    pin.add_argument("image", help="the pushed image, e.g. registry:5000/team/pytorch:TAG")
    pin.add_argument("-H", "--docker-host", help="Docker daemon (default: DOCKER_HOST)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except inventory.InventoryError as error:
        _print_findings(error.findings, ", ".join(args.inventory or ["the inventory"]))
        return 1
    except BrokenPipeError:
        # `gpuprov plan --json | head`: the reader left; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
