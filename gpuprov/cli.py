"""The ``gpuprov`` command: what Ansible is poor at, from the same core."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict

from . import inventory_files
from .core import image_pin, inventory, probe

DEFAULT_INVENTORY = "inventories/local"


def _load_fleet(path: str) -> inventory.Fleet:
    return inventory.fleet(inventory_files.load(path))


def cmd_check(args: argparse.Namespace) -> int:
    try:
        tree = inventory_files.load(args.inventory)
    except inventory.InventoryError as error:
        findings = error.findings
    else:
        findings = inventory.check(tree)
    for finding in findings:
        print(f"ERROR {finding}", file=sys.stderr)
    if findings:
        print(f"{args.inventory}: {len(findings)} error(s); nothing was changed", file=sys.stderr)
        return 1
    plan = inventory.fleet(tree)
    print(
        f"{args.inventory}: ok ({len(plan.hosts)} host(s), "
        f"{len({w.user for w in plan.workspaces})} user(s), {len(plan.workspaces)} workspace(s))"
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _load_fleet(args.inventory)
    if args.json:
        print(json.dumps([asdict(w) for w in plan.workspaces], indent=2, default=list))
        return 0
    print(f"{'host':<16} {'user':<12} {'kind':<8} {'port':>5}  gpus")
    for w in plan.workspaces:
        print(f"{w.host:<16} {w.user:<12} {w.kind:<8} {w.port:>5}  {','.join(w.gpus) or '-'}")
    return 0


def _team_pin(tree: inventory.Tree) -> object:
    sourced = tree.groups.get("all", inventory.Group("all")).vars.get("gpuprov_image")
    return None if sourced is None else sourced.value


def _pin(path: str) -> dict:
    pin = _team_pin(inventory_files.load(path))
    if pin is None:
        raise SystemExit(f"{path}: no gpuprov_image pin in group_vars/all")
    return pin


def cmd_audit(args: argparse.Namespace) -> int:
    from . import image_cli

    return image_cli.audit(args.image, _pin(args.inventory), args.json, args.docker_host)


def cmd_image_pin(args: argparse.Namespace) -> int:
    from . import image_cli

    return image_cli.pin(args.image, args.docker_host)


def cmd_status(args: argparse.Namespace) -> int:
    from . import fleet

    tree = inventory_files.load(args.inventory)
    found = fleet.targets(tree)
    pinned = image_pin.run_names(_team_pin(tree))
    if args.limit:
        found = [t for t in found if t.name in args.limit.split(",")]
    results = fleet.probe_all(found, timeout=args.timeout)
    print(
        f"{'host':<14} {'hostname':<14} {'driver':<14} {'gpus':<26} {'toolkit':<8} "
        f"{'docker':<10} {'workspaces':<10} image"
    )
    failed = 0
    for result in results:
        name = result.target.name
        if result.status is None:
            failed += 1
            print(f"{name:<14} UNREACHABLE: {result.error}")
            continue
        s = result.status
        names = sorted({g.name or "?" for g in s.gpus})
        gpus = f"{len(s.gpus)} x {', '.join(names)}" if s.gpus else "-"
        print(
            f"{name:<14} {s.hostname:<14} {s.driver:<14} {gpus[:26]:<26} {s.toolkit or '-':<8} "
            f"{s.docker or 'DOWN':<10} {len(s.workspaces):<10} {probe.pin_state(s.images, pinned)}"
        )
        for problem in s.problems:
            print(f"{'':<14} ! {problem}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuprov", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "-i",
            "--inventory",
            default=DEFAULT_INVENTORY,
            help=f"inventory directory (default: {DEFAULT_INVENTORY})",
        )
        sub.set_defaults(handler=handler)
        return sub

    add("check", cmd_check, "Validate an inventory without contacting any host.")
    status = add("status", cmd_status, "Probe every host at once over SSH (read-only).")
    status.add_argument("-l", "--limit", help="comma-separated host names")
    status.add_argument("--timeout", type=float, default=10.0, help="seconds to connect")
    add("plan", cmd_plan, "Show every workspace with its host, port and GPUs.").add_argument(
        "--json", action="store_true", help="print JSON"
    )
    audit = add("audit", cmd_audit, "Audit an image's packages and labels against the pin.")
    audit.add_argument("image", help="image name, reference@digest or ID (on the local engine)")
    audit.add_argument("--json", action="store_true", help="print JSON")
    audit.add_argument("-H", "--docker-host", help="Docker daemon (default: DOCKER_HOST)")
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
        for finding in error.findings:
            print(f"ERROR {finding}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
