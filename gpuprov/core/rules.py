"""The rules of a gpuprov inventory: schema, team-wide values, and rules across fields.

They read only what Ansible resolved for each host (``inventory.Inventory``),
so what they accept is what the roles will run with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import image_ref, paths, sshkey
from .allocation import GpuAllocationError, assign_gpus
from .inventory import (
    Finding,
    Inventory,
    InventoryError,
    Origin,
    Sourced,
    subject_of,
    user_subject,
)
from .plan import (
    Fleet,
    HostPlan,
    build,
    host_plan,
    requests,
    team_value,
    users_by_host,
    workspace_port,
)
from .schema import unknown_key_message
from .variables import ALL_VARIABLES, FACTS, PREFIX, RUN_VARIABLES, TEAM_VARIABLES
from .workspace import user_dir


def _schema_findings(inventory: Inventory) -> Iterator[Finding]:
    seen: set[tuple[str, str]] = set()
    for host, variables in inventory.hosts.items():
        for name, sourced in variables.items():
            if not name.startswith(PREFIX) or (name, str(sourced.origin)) in seen:
                continue
            seen.add((name, str(sourced.origin)))
            subject = subject_of(sourced.origin, host)
            yield from _variable_findings(name, sourced, subject)


def _variable_findings(name: str, sourced: Sourced, subject: str) -> Iterator[Finding]:
    if name in RUN_VARIABLES:
        if sourced.origin.command_line:
            return
        yield Finding.at(
            sourced.origin,
            subject,
            name,
            f"is read by {RUN_VARIABLES[name]} from the command line only (play "
            "keywords do not see inventory variables), so here it would do nothing",
            f"remove it and pass -e {name}=VALUE",
        )
        return
    if name in FACTS:
        yield Finding.at(
            sourced.origin,
            subject,
            name,
            f"is set by {FACTS[name]} during a run, so a value here is never used",
            "remove it",
        )
        return
    node = ALL_VARIABLES.get(name)
    if node is None:
        yield Finding.at(
            sourced.origin,
            subject,
            name,
            unknown_key_message(name, ALL_VARIABLES),
            "rename or remove it (see docs/inventory.md)",
        )
        return
    for problem in node.validate(sourced.value, name):
        yield Finding.at(
            sourced.origin_of(problem.path[len(name) :]),
            user_subject(sourced.value, problem.path, subject),
            problem.path,
            problem.message,
            "correct the value (see docs/inventory.md)",
        )


def _team_findings(inventory: Inventory) -> Iterator[Finding]:
    """A team variable must reach every host from one place, or hosts would disagree."""
    for name in TEAM_VARIABLES:
        chosen = team_value(inventory, name)
        if chosen is None:
            continue
        reported: set[str] = set()
        for host, variables in sorted(inventory.hosts.items()):
            found = variables.get(name)
            if found is not None and found.file == chosen.file:
                continue
            where = found.origin if found else Origin(inventory.source)
            if where.file in reported:
                continue
            reported.add(where.file)
            said = "sets its own" if found else "does not get it, while other hosts get"
            yield Finding.at(
                where,
                subject_of(where, host) if found else f"host '{host}'",
                name,
                f"describes the whole team, so it must be set for group 'all'; host '{host}' "
                f"{said} value{'' if found else ' from ' + chosen.file}",
                "move it to group_vars/all/ and remove the other copies",
            )


class _Rules:
    """Cross-field rules; they run only on data the schema accepted."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.findings: list[Finding] = []
        self.hosts = {h: host_plan(h, v) for h, v in sorted(inventory.hosts.items())}
        self.users_var = team_value(inventory, "gpuprov_users") or Sourced(
            [], Origin(inventory.source)
        )
        self.users: list[dict[str, Any]] = self.users_var.value
        self.index_of = {id(u): i for i, u in enumerate(self.users)}
        self.placed = users_by_host(self.users)

    def add(self, user: str, key: str, message: str, fix: str) -> None:
        """A finding at the users file, on the line of the key path when Ansible knows it."""
        where = self.users_var.origin_of(key.removeprefix("gpuprov_users"))
        self.findings.append(Finding.at(where, user, key, message, fix))

    def run(self) -> None:
        for host in self.hosts.values():
            if (why := paths.data_root_problem(host.data_root)) is not None:
                where = self.inventory.hosts[host.name]["gpuprov_data_root"].origin
                self.findings.append(
                    Finding.at(
                        where, subject_of(where, host.name), "gpuprov_data_root", why,
                        "use a directory of its own, such as /srv/gpuprov",
                    )
                )  # fmt: skip
            if host.ports.first > host.ports.last:
                where = self.inventory.hosts[host.name]["gpuprov_port_range"].origin
                self.findings.append(
                    Finding.at(
                        where,
                        f"host '{host.name}'",
                        "gpuprov_port_range",
                        f"first {host.ports.first} is above last {host.ports.last}",
                        "swap the two values",
                    )
                )
        self.image()
        self.identities()
        for index, user in enumerate(self.users):
            self.user(index, user)
        self.ports()
        self.gpus()

    def image(self) -> None:
        sourced = team_value(self.inventory, "gpuprov_image")
        if sourced is None:
            self.findings.append(
                Finding(
                    self.inventory.source,
                    "inventory",
                    "gpuprov_image",
                    "the team image is not pinned anywhere",
                    "add group_vars/all/image.yml with gpuprov_image (see docs/inventory.md)",
                )
            )
            return
        image = sourced.value
        reference = image_ref.parse(image["reference"])
        if reference.tag:
            self.findings.append(
                Finding.at(
                    sourced.origin_of(".reference"),
                    "inventory",
                    "gpuprov_image.reference",
                    f"names tag {reference.tag!r}; a tag can move, so the pin is the digest",
                    "remove the tag and put the digest in gpuprov_image.digest",
                )
            )
        if reference.digest:
            self.findings.append(
                Finding.at(
                    sourced.origin_of(".reference"),
                    "inventory",
                    "gpuprov_image.reference",
                    "carries a digest; the pin keeps it in one place",
                    "move it to gpuprov_image.digest",
                )
            )
        if image["source"] == "build":
            for key in ("digest", "id"):
                if key in image:
                    self.findings.append(
                        Finding.at(
                            sourced.origin_of(f".{key}"),
                            "inventory",
                            f"gpuprov_image.{key}",
                            f"is set, but source: build makes a new image on every build, so "
                            f"the recorded {key} would be ignored",
                            f"remove {key} to build here, or set source: pull to run the "
                            f"recorded image (`gpuprov image pin` prints the whole pin)",
                        )
                    )
        if image["source"] == "pull" and "digest" not in image:
            self.findings.append(
                Finding.at(
                    sourced.origin,
                    "inventory",
                    "gpuprov_image.digest",
                    "the image is pulled but not pinned by digest",
                    "add digest: sha256:... (docker buildx imagetools inspect, or `gpuprov image` "
                    "after a build, prints it)",
                )
            )

    def identities(self) -> None:
        names: dict[str, int] = {}
        uids: dict[int, str] = {}
        for index, user in enumerate(self.users):
            name, uid = user["name"], user["uid"]
            if name in names:
                self.add(
                    f"user '{name}'",
                    f"gpuprov_users[{index}].name",
                    f"is also gpuprov_users[{names[name]}]",
                    "give each user one entry",
                )
            else:
                names[name] = index
            if uid in uids:
                self.add(
                    f"user '{name}'",
                    f"gpuprov_users[{index}].uid",
                    f"uid {uid} is already user '{uids[uid]}'s",
                    "give each user a unique uid",
                )
            else:
                uids[uid] = name

    def user(self, index: int, user: dict[str, Any]) -> None:
        subject, key = f"user '{user['name']}'", f"gpuprov_users[{index}]"
        host = self.hosts.get(user["host"])
        if host is None:
            known = ", ".join(self.hosts) or "none"
            self.add(
                subject,
                f"{key}.host",
                f"host {user['host']!r} is not in the inventory",
                f"use one of: {known}",
            )
        kinds = [w["kind"] for w in user["workspaces"]]
        for kind in sorted({k for k in kinds if kinds.count(k) > 1}):
            self.add(
                subject,
                f"{key}.workspaces",
                f"asks for two {kind} workspaces",
                "list each kind once",
            )
        keys = user.get("ssh_keys", [])
        if "ssh" in kinds and not keys:
            self.add(
                subject,
                f"{key}.ssh_keys",
                "an SSH workspace needs at least one public key",
                "add the user's ~/.ssh/id_ed25519.pub line to ssh_keys",
            )
        for key_index, line in enumerate(keys):
            # A templated key ("{{ lookup('file', ...) }}") only exists on the
            # controller at run time; the workspaces role checks it then.
            if "{{" in line:
                continue
            if (why := sshkey.problem(line)) is not None:
                self.add(
                    subject,
                    f"{key}.ssh_keys[{key_index}]",
                    why,
                    "paste the single line of the user's .pub file",
                )
        targets = [paths.normal(v["target"]) for v in user.get("volumes", [])]
        for target in sorted({t for t in targets if targets.count(t) > 1}):
            self.add(
                subject,
                f"{key}.volumes",
                f"two volumes mount at {target}",
                "give each volume its own target",
            )
        if host is None:
            return
        self.volumes(subject, key, user, host)
        for w_index, workspace in enumerate(user["workspaces"]):
            port = workspace.get("port")
            if port is not None and port not in host.ports:
                self.add(
                    subject,
                    f"{key}.workspaces[{w_index}].port",
                    f"port {port} is outside host '{host.name}'s range "
                    f"{host.ports.first}-{host.ports.last}",
                    "pick a port inside the range or widen gpuprov_port_range",
                )
        gpus = user.get("gpus")
        if gpus and host.gpu_count is not None:
            for g_index, device in enumerate(gpus if isinstance(gpus, list) else []):
                if isinstance(device, int) and device >= host.gpu_count:
                    self.add(
                        subject,
                        f"{key}.gpus[{g_index}]",
                        f"GPU index {device} does not exist: host '{host.name}' is expected "
                        f"to have {host.gpu_count} GPU(s), indices 0-{host.gpu_count - 1}",
                        "use an index below the count, or fix gpuprov_gpu.count",
                    )
        if isinstance(gpus, dict) and host.gpu_count is None:
            self.add(
                subject,
                f"{key}.gpus.count",
                f"host '{host.name}' does not say how many GPUs it has, so none can be counted out",
                "set gpuprov_gpu.count for the host, or list GPU indices",
            )
        if gpus and host.gpu_count == 0:
            self.add(
                subject,
                f"{key}.gpus",
                f"host '{host.name}' is expected to have no GPU",
                "remove gpus or place the user on a GPU host",
            )

    def volumes(self, subject: str, key: str, user: dict[str, Any], host: HostPlan) -> None:
        others = [
            user_dir(host.data_root, u["name"]) for u in self.users if u["name"] != user["name"]
        ]
        own = user_dir(host.data_root, user["name"])
        for v_index, volume in enumerate(user.get("volumes", [])):
            found = paths.source_problem(
                volume["source"], host.data_root, own, others, host.volume_roots
            )
            if found is not None:
                self.add(subject, f"{key}.volumes[{v_index}].source", *found)
            found = paths.target_problem(volume["target"], f"/home/{user['name']}")
            if found is not None:
                self.add(subject, f"{key}.volumes[{v_index}].target", *found)

    def ports(self) -> None:
        taken: dict[tuple[str, int], str] = {}
        for index, user in enumerate(self.users):
            host = self.hosts.get(user["host"])
            if host is None:
                continue
            for w_index, workspace in enumerate(user["workspaces"]):
                kind = workspace["kind"]
                port = workspace_port(user, workspace, host.ports)
                owner = f"{user['name']}'s {kind}"
                if (host.name, port) in taken:
                    self.add(
                        f"user '{user['name']}'",
                        f"gpuprov_users[{index}].workspaces[{w_index}]",
                        f"port {port} on host '{host.name}' is already {taken[host.name, port]}",
                        "set a distinct port: for one of them",
                    )
                taken[host.name, port] = owner

    def gpus(self) -> None:
        for host in self.hosts.values():
            placed = [u for u in self.placed.get(host.name, []) if u.get("gpus")]
            if not placed:
                continue
            owners: dict[str, str] = {}
            index_of = self.index_of
            for user in placed:
                gpus = user["gpus"]
                devices = [str(d) for d in gpus] if isinstance(gpus, list) else []
                for device in devices:
                    if device in owners and not host.gpu_shared and owners[device] != user["name"]:
                        self.add(
                            f"user '{user['name']}'",
                            f"gpuprov_users[{index_of[id(user)]}].gpus",
                            f"GPU {device} on host '{host.name}' is already given to user "
                            f"'{owners[device]}' and the host's GPUs are exclusive",
                            "give another GPU, or set gpuprov_gpu.shared: true for the host",
                        )
                    owners.setdefault(device, user["name"])
            if host.gpu_count is not None:
                try:
                    assign_gpus(requests(placed), host.gpu_count, host.gpu_shared)
                except GpuAllocationError as error:
                    self.add(
                        f"host '{host.name}'",
                        "gpuprov_users[*].gpus",
                        str(error),
                        "lower the count or add GPUs to the host",
                    )


def check(inventory: Inventory) -> list[Finding]:
    """Every problem in the inventory; an empty list means it is usable."""
    findings = [*inventory.findings, *_schema_findings(inventory), *_team_findings(inventory)]
    if not inventory.hosts:
        findings.append(
            Finding(
                inventory.source,
                "inventory",
                "hosts",
                "no hosts are defined",
                "add hosts to the inventory (see inventories/example/hosts.yml)",
            )
        )
    if findings:
        return findings
    rules = _Rules(inventory)
    rules.run()
    return rules.findings


def fleet(inventory: Inventory) -> Fleet:
    """The plan of the inventory: hosts, and every workspace with port and GPUs."""
    findings = check(inventory)
    if findings:
        raise InventoryError(findings)
    return build(inventory)
