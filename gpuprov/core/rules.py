"""The rules of a gpuprov inventory: schema, team-wide values, and rules across fields.

They read only what Ansible resolved for each host (``inventory.Inventory``),
so what they accept is what the roles will run with.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from . import image_ref, paths, sshkey
from .allocation import KIND_OFFSETS, GpuAllocationError, assign_gpus
from .inventory import (
    Finding,
    Inventory,
    InventoryError,
    Origin,
    Sourced,
    subject_of,
    user_subject,
)
from .limits import size_bytes
from .plan import (
    Fleet,
    HostPlan,
    build,
    effective_limits,
    host_plan,
    requests,
    team_value,
    users_by_host,
    workspace_port,
)
from .schema import closest, unknown_key_message
from .variables import (
    ALL_VARIABLES,
    FACTS,
    GROUP_CONNECTION_VARIABLES,
    IMAGE_DEFAULT_UID,
    PREFIX,
    RESERVED_USERS,
    TEAM_VARIABLES,
)


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
        self.names = {u["name"] for u in self.users}

    def add(self, user: str, key: str, message: str, fix: str, warning: bool = False) -> None:
        """A finding at the users file, on the line of the key path when Ansible knows it."""
        where = self.users_var.origin_of(key.removeprefix("gpuprov_users"))
        self.findings.append(Finding.at(where, user, key, message, fix, warning))

    def at_host(self, host: str, key: str, message: str, fix: str) -> None:
        """A finding at the place the host's variable ``key`` (or the host) was written."""
        variables = self.inventory.hosts[host]
        name = key.split(".", 1)[0]
        where = variables[name].origin if name in variables else Origin(self.inventory.source)
        self.findings.append(Finding.at(where, f"host '{host}'", key, message, fix))

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
                self.at_host(
                    host.name,
                    "gpuprov_port_range",
                    f"first {host.ports.first} is above last {host.ports.last}",
                    "swap the two values",
                )
            elif host.ports.size < len(KIND_OFFSETS):
                self.at_host(
                    host.name,
                    "gpuprov_port_range",
                    f"{host.ports.first}-{host.ports.last} holds {host.ports.size} port(s); a "
                    f"user needs {len(KIND_OFFSETS)} (Jupyter and SSH)",
                    "give the range at least one port per workspace of the host's users",
                )
        self.fleet_structure()
        self.connection_gaps()
        if any(not f.warning for f in self.findings):
            return  # ports and GPUs are counted out of sound ranges only
        self.image()
        self.registry()
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

    def registry(self) -> None:
        sourced = team_value(self.inventory, "gpuprov_registry")
        if sourced is not None and isinstance(sourced.value.get("password"), str):
            self.findings.append(
                Finding.at(
                    sourced.origin_of(".password"), "inventory", "gpuprov_registry.password",
                    PLAIN_SECRET, VAULT_FIX.format(name="password"), warning=True,
                )
            )  # fmt: skip

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
            if name in RESERVED_USERS:
                self.add(
                    f"user '{name}'",
                    f"gpuprov_users[{index}].name",
                    f"{name!r} is a system account or an image's default user; inside the "
                    "workspace it would be that account",
                    "use the person's own login name",
                )
            if uid == IMAGE_DEFAULT_UID:
                self.add(
                    f"user '{name}'",
                    f"gpuprov_users[{index}].uid",
                    f"uid {uid} is the default user of many images (ubuntu, jupyter's jovyan), "
                    "whose files in the image this user would own",
                    "use the person's uid on the hosts if it is not 1000, or check the image",
                    warning=True,
                )
        for index, user in enumerate(self.users):
            gid = user.get("gid")
            if gid is not None and gid != user["uid"] and gid in uids:
                self.add(
                    f"user '{user['name']}'",
                    f"gpuprov_users[{index}].gid",
                    f"gid {gid} is user '{uids[gid]}'s uid; by the usual one-group-per-user "
                    "scheme the two would share that user's files",
                    "use the user's own group, or a team group outside the users' uids",
                    warning=True,
                )

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
        self.limits(subject, key, effective_limits(host, user))
        self.secrets(subject, key, user)
        gpus = user.get("gpus")
        if isinstance(gpus, list):
            named = [str(d) for d in gpus]
            for device in sorted({d for d in named if named.count(d) > 1}):
                self.add(subject, f"{key}.gpus", f"lists GPU {device} twice", "list each GPU once")
            if host.gpu_count is None and any(isinstance(d, int) for d in gpus):
                self.add(
                    subject,
                    f"{key}.gpus",
                    f"names GPU indices, but host '{host.name}' does not say how many GPUs it "
                    "has, so the check cannot tell whether they exist",
                    "set gpuprov_gpu.count for the host",
                    warning=True,
                )
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

    def limits(self, subject: str, key: str, limits: dict[str, Any]) -> None:
        """``limits``: what the workspace gets, the host's defaults under the user's."""
        memory, shm = limits.get("memory"), limits.get("shm_size")
        if memory is not None and shm is not None and size_bytes(shm) > size_bytes(memory):
            self.add(
                subject,
                f"{key}.limits.shm_size",
                f"{shm} of shared memory is above the memory limit {memory}, which it counts "
                "against",
                "lower shm_size or raise memory",
            )

    def secrets(self, subject: str, key: str, user: dict[str, Any]) -> None:
        for name in ("jupyter_token", "jupyter_password_hash"):
            if isinstance(user.get(name), str):
                self.add(
                    subject, f"{key}.{name}", PLAIN_SECRET, VAULT_FIX.format(name=name),
                    warning=True,
                )  # fmt: skip
        hashed = user.get("jupyter_password_hash")
        if isinstance(hashed, str) and not re.match(PASSWORD_HASH, hashed):
            self.add(
                subject,
                f"{key}.jupyter_password_hash",
                "is not a hash jupyter_server reads (argon2:$argon2id$… or sha1:salt:hex); a "
                "password written here would never let anyone in",
                "make one with: python3 -c 'from jupyter_server.auth import passwd; "
                "print(passwd())'",
            )
        token = user.get("jupyter_token")
        if isinstance(token, str) and len(token) < TOKEN_MIN:
            self.add(
                subject,
                f"{key}.jupyter_token",
                f"is {len(token)} characters; a token under {TOKEN_MIN} can be guessed",
                "leave it out (gpuprov generates one) or use `openssl rand -hex 24`",
            )

    def fleet_structure(self) -> None:
        by_address: dict[tuple[str, int], str] = {}
        for host, variables in self.inventory.hosts.items():
            if "/" in host or host.startswith(".") or host != host.strip():
                named = variables.get("ansible_host")
                where = named.origin if named else Origin(self.inventory.source)
                self.findings.append(
                    Finding.at(
                        where, f"host '{host}'", "(host name)",
                        "is not a plain name; gpuprov names reports and files after hosts",
                        "name the host with letters, digits, '.', '-' and '_', and put its "
                        "address in ansible_host",
                    )
                )  # fmt: skip
            if _value(variables, "ansible_connection") == "local":
                address = "localhost"
            else:
                address = str(_value(variables, "ansible_host") or host)
            port = _value(variables, "ansible_port") or 22
            seen = by_address.setdefault((address, int(port)), host)
            if seen != host:
                self.at_host(
                    host,
                    "ansible_host",
                    f"{address}:{port} is also host '{seen}'; two names for one machine remove "
                    "each other's workspaces as stale and give its GPUs twice",
                    "keep one entry per machine (put it in several groups instead)",
                )

    def connection_gaps(self) -> None:
        """Hosts left without the connection settings a group gives its hosts.

        A host listed under a misspelt group, or outside the group whose
        group_vars say how to reach and become root on its machines, connects as
        the controller's user with no become: a judgement call, so a warning.
        """
        hosts = self.inventory.hosts
        for group, members in sorted(self.inventory.groups.items()):
            if not members or any(m not in hosts for m in members):
                continue
            for name in GROUP_CONNECTION_VARIABLES:
                # One origin for every member: a group's vars, not each host's own.
                origins = {hosts[m][name].origin if name in hosts[m] else None for m in members}
                if len(origins) != 1 or (origin := origins.pop()) is None:
                    continue
                for host in sorted(set(hosts) - set(members)):
                    if name in hosts[host]:
                        continue
                    own = [g for g, m in self.inventory.groups.items() if host in m]
                    others = [h for h in hosts if h != host]
                    typo = closest(group, own)
                    if typo is None and not all(name in hosts[h] for h in others):
                        continue
                    self.findings.append(
                        Finding(
                            self.inventory.source, f"host '{host}'", name,
                            f"is not set, while group '{group}' gives it to its hosts ({origin}); "
                            f"'{host}' is not in that group, so it connects with Ansible's "
                            "defaults" + (f" (it is in '{typo}')" if typo else ""),
                            f"add '{host}' to group '{group}'"
                            + (f" (is '{typo}' a typo?)" if typo else "")
                            + f", or set {name} for it",
                            warning=True,
                        )
                    )  # fmt: skip

    def volumes(self, subject: str, key: str, user: dict[str, Any], host: HostPlan) -> None:
        for v_index, volume in enumerate(user.get("volumes", [])):
            found = paths.source_problem(
                volume["source"], host.data_root, user["name"], self.names, host.volume_roots
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


def _value(variables: dict[str, Sourced], name: str) -> Any:
    found = variables.get(name)
    return None if found is None else found.value


PLAIN_SECRET = "is written in plain text, so it sits in git and in every clone"
VAULT_FIX = "encrypt it: ansible-vault encrypt_string --name {name} (see docs/inventory.md)"
TOKEN_MIN = 32
PASSWORD_HASH = r"argon2:\$argon2(id|i|d)\$\S+$|sha1:[0-9a-f]+:[0-9a-f]{40}$"


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


def verdict(
    inventory: Inventory, findings: list[Finding], strict: bool = False
) -> tuple[list[Finding], list[Finding]]:
    """(errors, warnings): warnings count as errors under --strict or gpuprov_strict."""
    chosen = team_value(inventory, "gpuprov_strict")
    if strict or (chosen is not None and chosen.value is True):
        return [replace(f, warning=False) for f in findings], []
    return [f for f in findings if not f.warning], [f for f in findings if f.warning]


def fleet(inventory: Inventory) -> Fleet:
    """The plan of the inventory: hosts, and every workspace with port and GPUs."""
    errors, _ = verdict(inventory, check(inventory))
    if errors:
        raise InventoryError(errors)
    return build(inventory)
