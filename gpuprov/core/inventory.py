"""The gpuprov inventory: what each variable means, and the rules across them.

The loader (outside the core) turns inventory files into a ``Tree`` that
remembers which file every variable came from; ``check`` validates it without
contacting a host, and ``fleet`` turns a valid one into the plan the roles use.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import image_ref, sshkey
from .allocation import (
    KIND_OFFSETS,
    GpuAllocationError,
    GpuAssignment,
    GpuRequest,
    PortRange,
    assign_gpus,
    default_port,
)
from .schema import AnyOf, Bool, Int, ListOf, Map, Node, Num, Secret, Str, unknown_key_message

PREFIX = "gpuprov_"
# Variables a playbook reads in a play keyword (serial), where only -e reaches.
RUN_VARIABLES = {"gpuprov_rollout_batch": "playbooks/upgrade.yml"}
DEFAULT_PORT_RANGE = PortRange(20000, 20999)
DEFAULT_BIND_ADDRESS = "127.0.0.1"
DEFAULT_DATA_ROOT = "/srv/gpuprov"
USER_NAME = r"[a-z_][a-z0-9_-]{0,31}"
GPU_UUID = r"(GPU|MIG)-[0-9a-fA-F-]{8,}"


def _ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address (use 127.0.0.1 to keep workspaces local)"
    return None


def _absolute(value: str) -> str | None:
    if not posixpath.isabs(value) or ".." in value.split("/"):
        return f"{value!r} must be an absolute path without '..'"
    return None


def _reference(value: str) -> str | None:
    try:
        image_ref.parse(value)
    except image_ref.ImageReferenceError as error:
        return str(error)
    return None


SIZE = Str(pattern=r"[0-9]+[bkmg]?", hint="a size such as 512m or 16g")
VERSION = Str(pattern=r"[0-9][0-9A-Za-z.+_-]*", hint="a version such as 2.7.1 or 12.6")

GPU = Map(
    description="The GPUs a host is expected to have.",
    fields={
        "required": Bool(description="false: the host may have no GPU (GPU checks say n/a)."),
        "count": Int(minimum=0, maximum=64, description="How many GPUs the host must show."),
        "model": Str(description="A substring of the expected GPU name, e.g. 'H100'."),
        "shared": Bool(description="true: several users may be given the same GPU."),
    },
)
PORT_RANGE = Map(
    description="The host ports workspaces may publish.",
    fields={"first": Int(minimum=1024, maximum=65535), "last": Int(minimum=1024, maximum=65535)},
    required=("first", "last"),
)
PROMISES = Map(
    description="The versions the team image promises; every check compares against them.",
    fields={
        "python": VERSION,
        "torch": VERSION,
        "torchvision": VERSION,
        "torchaudio": VERSION,
        "cuda": Str(pattern=r"none|[0-9]+\.[0-9]+", hint="a CUDA version such as 12.6, or none"),
        "cudnn": Str(pattern=r"none|[0-9][0-9.]*", hint="a cuDNN version such as 9.5.1, or none"),
    },
    required=("python", "torch", "cuda"),
)
IMAGE = Map(
    description="The ONE team image, pinned.",
    fields={
        "reference": Str(
            check=_reference, description="Repository, e.g. registry:5000/team/pytorch."
        ),
        "digest": Str(pattern=image_ref.DIGEST_RE.pattern[1:-1], hint="sha256: and 64 hex digits"),
        "id": Str(
            pattern=image_ref.DIGEST_RE.pattern[1:-1],
            hint="sha256: and 64 hex digits",
            description="The image ID (config digest): verifies an image loaded from an archive.",
        ),
        "source": Str(choices=("pull", "build"), description="pull the digest, or build here."),
        "flavour": Str(choices=("cuda", "cpu"), description="cpu: a machine without a GPU."),
        "promises": PROMISES,
    },
    required=("reference", "source", "promises"),
)
REGISTRY = Map(
    description="The team registry and its credentials (keep the password in Vault).",
    fields={
        "address": Str(description="host[:port] of the registry."),
        "username": Str(),
        "password": Secret(),
        "insecure": Bool(description="true: plain HTTP (test beds only)."),
    },
    required=("address",),
)
WORKSPACE = Map(
    fields={
        "kind": Str(choices=tuple(KIND_OFFSETS)),
        "port": Int(minimum=1024, maximum=65535, description="A fixed host port."),
    },
    required=("kind",),
)
VOLUME = Map(
    fields={
        "source": Str(check=_absolute),
        "target": Str(check=_absolute),
        "read_only": Bool(),
    },
    required=("source", "target"),
)
LIMITS = Map(
    fields={
        "memory": SIZE,
        "cpus": Num(),
        "pids": Int(minimum=64),
        "shm_size": SIZE,
    },
)
USER = Map(
    fields={
        "name": Str(pattern=USER_NAME, hint="lower-case letters, digits, '_' or '-', max 32"),
        "uid": Int(minimum=1000, maximum=65533),
        "gid": Int(minimum=1000, maximum=65533),
        "host": Str(),
        "ssh_keys": ListOf(Str()),
        "workspaces": ListOf(WORKSPACE, min_items=1),
        "gpus": AnyOf(
            (
                ListOf(
                    AnyOf(
                        (
                            Int(minimum=0),
                            Str(pattern=GPU_UUID, hint="a GPU index or a GPU-/MIG- UUID"),
                        )
                    )
                ),
                Map(fields={"count": Int(minimum=1)}, required=("count",)),
            )
        ),
        "volumes": ListOf(VOLUME),
        "limits": LIMITS,
        "jupyter_token": Secret(
            description="The user's Jupyter token (keep it in Vault); generated once when absent."
        ),
        "jupyter_password_hash": Secret(
            description="An argon2 hash from jupyter_server.auth.passwd for the browser login."
        ),
    },
    required=("name", "uid", "host", "workspaces"),
)

# Variables that may differ per host, resolved with Ansible's precedence.
HOST_VARIABLES: dict[str, Node] = {
    "gpuprov_gpu": GPU,
    "gpuprov_port_range": PORT_RANGE,
    "gpuprov_bind_address": Str(check=_ip),
    "gpuprov_data_root": Str(check=_absolute),
    "gpuprov_docker_manage": Bool(),
}
# Variables that describe the team, so they must hold for all hosts alike.
TEAM_VARIABLES: dict[str, Node] = {
    "gpuprov_image": IMAGE,
    "gpuprov_users": ListOf(USER),
    "gpuprov_registry": REGISTRY,
}
ALL_VARIABLES = {**HOST_VARIABLES, **TEAM_VARIABLES}


@dataclass(frozen=True)
class Sourced:
    """A variable's value and the file that set it."""

    value: Any
    file: str


@dataclass
class Group:
    name: str
    vars: dict[str, Sourced] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class Tree:
    """An inventory as written: groups, hosts and where each variable lives."""

    source: str
    groups: dict[str, Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Sourced]] = field(default_factory=dict)

    def group(self, name: str) -> Group:
        return self.groups.setdefault(name, Group(name))


@dataclass(frozen=True)
class Finding:
    """One thing wrong with an inventory, said so a person can fix it."""

    file: str
    subject: str
    key: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}: {self.subject}: {self.key}: {self.message}"
        return f"{text}. Fix: {self.fix}" if self.fix else text


class InventoryError(ValueError):
    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


def _depths(tree: Tree) -> dict[str, int]:
    depth = {"all": 0}
    pending = ["all"]
    while pending:
        name = pending.pop()
        for child in tree.groups.get(name, Group(name)).children:
            if depth.get(child, -1) < depth[name] + 1:
                depth[child] = depth[name] + 1
                pending.append(child)
    return depth


def host_groups(tree: Tree, host: str) -> list[str]:
    """The host's groups in Ansible's precedence order: 'all' first, deepest last."""
    depth = _depths(tree)
    parents: dict[str, set[str]] = {}
    for group in tree.groups.values():
        for child in group.children:
            parents.setdefault(child, set()).add(group.name)
    found: set[str] = {"all"}
    pending = [g.name for g in tree.groups.values() if host in g.hosts]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(parents.get(name, ()))
    return sorted(found, key=lambda g: (depth.get(g, 0), g))


def hosts(tree: Tree) -> list[str]:
    names: set[str] = set()
    for group in tree.groups.values():
        names.update(group.hosts)
    return sorted(names)


def resolve(tree: Tree, host: str) -> dict[str, Sourced]:
    """The host's variables; a later level replaces a whole value, as Ansible does."""
    merged: dict[str, Sourced] = {}
    for group in host_groups(tree, host):
        merged.update(tree.groups[group].vars if group in tree.groups else {})
    merged.update(tree.host_vars.get(host, {}))
    return merged


def _team_value(tree: Tree, name: str) -> Sourced | None:
    return tree.groups.get("all", Group("all")).vars.get(name)


def _schema_findings(tree: Tree) -> Iterator[Finding]:
    seen: set[tuple[str, str]] = set()
    places: list[tuple[str, dict[str, Sourced]]] = [
        (f"group '{g.name}'", g.vars) for g in tree.groups.values()
    ]
    places += [(f"host '{h}'", v) for h, v in tree.host_vars.items()]
    for subject, variables in places:
        for name, sourced in variables.items():
            if not name.startswith(PREFIX) or (name, sourced.file) in seen:
                continue
            seen.add((name, sourced.file))
            node = ALL_VARIABLES.get(name)
            if name in RUN_VARIABLES:
                yield Finding(
                    sourced.file,
                    subject,
                    name,
                    f"is read by {RUN_VARIABLES[name]} from the command line only (play "
                    "keywords do not see inventory variables), so here it would do nothing",
                    f"remove it and pass -e {name}=VALUE",
                )
                continue
            if node is None:
                yield Finding(
                    sourced.file,
                    subject,
                    name,
                    unknown_key_message(name, ALL_VARIABLES),
                    "rename or remove it (see docs/inventory.md)",
                )
                continue
            if name in TEAM_VARIABLES and subject != "group 'all'":
                yield Finding(
                    sourced.file,
                    subject,
                    name,
                    "describes the whole team, so it must be set for group 'all'",
                    "move it to group_vars/all/",
                )
            for problem in node.validate(sourced.value, name):
                yield Finding(
                    sourced.file,
                    _user_subject(sourced.value, problem.path, subject),
                    problem.path,
                    problem.message,
                    "correct the value (see docs/inventory.md)",
                )


def _user_subject(value: Any, path: str, default: str) -> str:
    match = re.match(r"gpuprov_users\[(\d+)\]", path)
    if match and isinstance(value, list):
        user = value[int(match.group(1))]
        if isinstance(user, dict) and isinstance(user.get("name"), str):
            return f"user '{user['name']}'"
    return default


@dataclass(frozen=True)
class HostPlan:
    """What the inventory expects of one host."""

    name: str
    gpu_required: bool
    gpu_count: int | None
    gpu_model: str | None
    gpu_shared: bool
    ports: PortRange
    bind_address: str
    data_root: str
    docker_manage: bool


@dataclass(frozen=True)
class WorkspacePlan:
    user: str
    uid: int
    gid: int
    host: str
    kind: str
    port: int
    bind_address: str
    gpus: tuple[str, ...]
    volumes: tuple[dict[str, Any], ...]
    limits: dict[str, Any]
    ssh_keys: tuple[str, ...]
    # Whether the inventory gives these credentials; the secrets never enter the plan.
    token_given: bool = False
    password_hash_given: bool = False


@dataclass(frozen=True)
class Fleet:
    hosts: dict[str, HostPlan]
    workspaces: tuple[WorkspacePlan, ...]
    image: dict[str, Any]

    def on_host(self, host: str) -> list[WorkspacePlan]:
        return [w for w in self.workspaces if w.host == host]


def _host_plan(tree: Tree, host: str) -> HostPlan:
    variables = {name: s.value for name, s in resolve(tree, host).items()}
    gpu = variables.get("gpuprov_gpu") or {}
    ports = variables.get("gpuprov_port_range")
    return HostPlan(
        name=host,
        gpu_required=gpu.get("required", True),
        gpu_count=gpu.get("count"),
        gpu_model=gpu.get("model"),
        gpu_shared=gpu.get("shared", False),
        ports=PortRange(ports["first"], ports["last"]) if ports else DEFAULT_PORT_RANGE,
        bind_address=variables.get("gpuprov_bind_address", DEFAULT_BIND_ADDRESS),
        data_root=variables.get("gpuprov_data_root", DEFAULT_DATA_ROOT),
        docker_manage=variables.get("gpuprov_docker_manage", False),
    )


class _Rules:
    """Cross-field rules; they run only on data the schema accepted."""

    def __init__(self, tree: Tree):
        self.tree = tree
        self.findings: list[Finding] = []
        self.hosts = {h: _host_plan(tree, h) for h in hosts(tree)}
        users = _team_value(tree, "gpuprov_users")
        self.users: list[dict[str, Any]] = users.value if users else []
        self.users_file = users.file if users else tree.source
        self.workspaces: list[WorkspacePlan] = []
        self.index_of = {id(u): i for i, u in enumerate(self.users)}
        # Users of each host in uid order: every per-host rule walks them.
        self.placed: dict[str, list[dict[str, Any]]] = {}
        for user in sorted(self.users, key=lambda u: u["uid"] if isinstance(u, dict) else 0):
            if isinstance(user, dict):
                self.placed.setdefault(user.get("host"), []).append(user)

    def add(self, user: str, key: str, message: str, fix: str, file: str | None = None) -> None:
        self.findings.append(Finding(file or self.users_file, user, key, message, fix))

    def run(self) -> None:
        for host in self.hosts.values():
            if host.ports.first > host.ports.last:
                file = resolve(self.tree, host.name)["gpuprov_port_range"].file
                self.findings.append(
                    Finding(
                        file,
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
        sourced = _team_value(self.tree, "gpuprov_image")
        if sourced is None:
            self.findings.append(
                Finding(
                    self.tree.source,
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
                Finding(
                    sourced.file,
                    "inventory",
                    "gpuprov_image.reference",
                    f"names tag {reference.tag!r}; a tag can move, so the pin is the digest",
                    "remove the tag and put the digest in gpuprov_image.digest",
                )
            )
        if reference.digest:
            self.findings.append(
                Finding(
                    sourced.file,
                    "inventory",
                    "gpuprov_image.reference",
                    "carries a digest; the pin keeps it in one place",
                    "move it to gpuprov_image.digest",
                )
            )
        if image["source"] == "pull" and "digest" not in image:
            self.findings.append(
                Finding(
                    sourced.file,
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
        targets = [v["target"] for v in user.get("volumes", [])]
        for target in sorted({t for t in targets if targets.count(t) > 1}):
            self.add(
                subject,
                f"{key}.volumes",
                f"two volumes mount at {target}",
                "give each volume its own target",
            )
        if host is None:
            return
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

    def ports(self) -> None:
        taken: dict[tuple[str, int], str] = {}
        for index, user in enumerate(self.users):
            host = self.hosts.get(user["host"])
            if host is None:
                continue
            for w_index, workspace in enumerate(user["workspaces"]):
                kind = workspace["kind"]
                port = workspace.get("port") or default_port(user["uid"], kind, host.ports)
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
                    assign_gpus(_requests(placed), host.gpu_count, host.gpu_shared)
                except GpuAllocationError as error:
                    self.add(
                        f"host '{host.name}'",
                        "gpuprov_users[*].gpus",
                        str(error),
                        "lower the count or add GPUs to the host",
                    )


def _requests(users: list[dict[str, Any]]) -> list[GpuRequest]:
    requests = []
    for user in users:
        gpus = user["gpus"]
        if isinstance(gpus, dict):
            requests.append(GpuRequest(user["name"], count=gpus["count"]))
        else:
            requests.append(GpuRequest(user["name"], devices=tuple(str(d) for d in gpus)))
    return requests


def check(tree: Tree) -> list[Finding]:
    """Every problem in the inventory; an empty list means it is usable."""
    findings = list(_schema_findings(tree))
    if not hosts(tree):
        findings.append(
            Finding(
                tree.source,
                "inventory",
                "hosts",
                "no hosts are defined",
                "add hosts under all: hosts: in hosts.yml",
            )
        )
    if findings:
        return findings
    rules = _Rules(tree)
    rules.run()
    return rules.findings


def fleet(tree: Tree) -> Fleet:
    """The plan for a valid inventory: hosts, and every workspace with port and GPUs."""
    findings = check(tree)
    if findings:
        raise InventoryError(findings)
    rules = _Rules(tree)
    image = _team_value(tree, "gpuprov_image")
    workspaces: list[WorkspacePlan] = []
    for host in rules.hosts.values():
        placed = rules.placed.get(host.name, [])
        with_gpus = [u for u in placed if u.get("gpus")]
        assigned: dict[str, GpuAssignment] = {}
        if with_gpus:
            count = host.gpu_count if host.gpu_count is not None else 0
            assigned = {
                a.user: a for a in assign_gpus(_requests(with_gpus), count, host.gpu_shared)
            }
        for user in placed:
            for workspace in user["workspaces"]:
                kind = workspace["kind"]
                workspaces.append(
                    WorkspacePlan(
                        user=user["name"],
                        uid=user["uid"],
                        gid=user.get("gid", user["uid"]),
                        host=host.name,
                        kind=kind,
                        port=workspace.get("port") or default_port(user["uid"], kind, host.ports),
                        bind_address=host.bind_address,
                        gpus=assigned[user["name"]].devices if user["name"] in assigned else (),
                        volumes=tuple(user.get("volumes", [])),
                        limits=dict(user.get("limits", {})),
                        ssh_keys=tuple(user.get("ssh_keys", [])),
                        token_given=bool(user.get("jupyter_token")),
                        password_hash_given=bool(user.get("jupyter_password_hash")),
                    )
                )
    return Fleet(
        hosts=rules.hosts, workspaces=tuple(workspaces), image=image.value if image else {}
    )
