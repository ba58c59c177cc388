"""Every ``gpuprov_*`` variable: its schema, its default, and who may set it.

The one contract between inventories, roles, playbooks and plugins: the check
validates against it, the roles take shared defaults from it (the
``gpuprov_default`` filter), and a test fails on any ``gpuprov_*`` name read
anywhere that is not declared here.
"""

from __future__ import annotations

import ipaddress
import posixpath
from typing import Any

from . import image_ref
from . import rollout_settings as rollout
from .allocation import KIND_OFFSETS
from .schema import AnyOf, Bool, Int, ListOf, Map, Node, Num, Secret, Str

PREFIX = "gpuprov_"
# Ansible's variables for reaching a host, which the check reads beside gpuprov's.
CONNECTION_VARIABLES = (
    "ansible_host",
    "ansible_user",
    "ansible_port",
    "ansible_connection",
    "ansible_ssh_private_key_file",
    "ansible_ssh_common_args",
    "ansible_become",
    "ansible_become_user",
)
# Those a group gives all its hosts alike (each host has an address of its own).
GROUP_CONNECTION_VARIABLES = tuple(n for n in CONNECTION_VARIABLES if n != "ansible_host")
USER_NAME = r"[a-z_][a-z0-9_-]{0,31}"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# nvidia-smi -L: GPU-UUID; MIG-UUID (R470+); MIG-GPU-UUID/GI/CI (older drivers).
GPU_UUID = rf"GPU-{_UUID}|MIG-{_UUID}|MIG-GPU-{_UUID}/[0-9]+/[0-9]+"
# Debian's system accounts and the default users of common base images: a
# workspace user of that name would be that account inside the image.
RESERVED_USERS = frozenset(
    [
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "_apt",
        "messagebus",
        "sshd",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "ubuntu",
        "jovyan",
        "debian",
        "admin",
    ]
)
# The first uid of a distribution's users, which images such as ubuntu and
# jupyter's give their default user.
IMAGE_DEFAULT_UID = 1000
# The kernel's ceiling for pid_max.
PID_MAX = 4194304


def _ip(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address (use 127.0.0.1 to keep workspaces local)"
    if address.version == 6:
        return (
            f"{value!r} is an IPv6 address; workspaces publish on IPv4 only for now "
            "(use 127.0.0.1, or the host's IPv4 address)"
        )
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


SIZE = Str(
    pattern=r"0*[1-9][0-9]*[bkmg]?",
    hint="a size above zero such as 512m or 16g (Docker reads 0 as no limit: leave the key out)",
)
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
        "size": Int(
            minimum=1,
            description="Bytes the image takes unpacked (docker inspect's Size); a host must "
            "have room for it before a pull (team_image_min_free is the floor). gpuprov "
            "image pin writes it.",
        ),
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
# A limit the host's defaults set may be lifted for one user, by name.
UNLIMITED = "unlimited"
_LIFTED = Str(choices=(UNLIMITED,))
LIMITS = Map(
    fields={
        "memory": Str(
            pattern=rf"0*[1-9][0-9]*[bkmg]?|{UNLIMITED}",
            hint="a size above zero such as 512m or 16g, or unlimited (Docker reads 0 as "
            "no limit: write unlimited)",
        ),
        "cpus": AnyOf((Num(maximum=1024), _LIFTED)),
        "pids": AnyOf((Int(minimum=64, maximum=PID_MAX), _LIFTED)),
        "shm_size": SIZE,
        "tmp_size": SIZE,
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
                            Str(
                                pattern=GPU_UUID,
                                hint="a GPU index, GPU-<uuid>, MIG-<uuid> or "
                                "MIG-GPU-<uuid>/<gi>/<ci>, as `nvidia-smi -L` prints them",
                            ),
                        )
                    )
                ),
                Map(fields={"count": Int(minimum=1)}, required=("count",)),
            )
        ),
        "volumes": ListOf(VOLUME),
        "limits": LIMITS,
        "ssh_port_forwarding": Bool(
            description="true: the SSH workspace allows local forwarding (ssh -L, -W) to "
            "the user's own notebook or TensorBoard; off by default."
        ),
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
    "gpuprov_workspace_limits": Map(
        fields=LIMITS.fields,
        description="The limits every workspace on the host gets; a user's own limits "
        "replace them key by key, and unlimited lifts one.",
    ),
    "gpuprov_volume_roots": ListOf(
        Str(check=_absolute),
        description="Where shared data may be mounted from; when set, every volume's "
        "source must lie under one of these.",
    ),
    "gpuprov_docker_manage": Bool(),
    "gpuprov_docker_host": Str(
        pattern=r"(unix|tcp|ssh)://\S+", hint="an address such as unix:///var/run/docker.sock"
    ),
    "gpuprov_nvidia_driver_manage": Bool(),
    "gpuprov_container_toolkit_manage": Bool(),
    "gpuprov_metrics_dir": Str(
        check=_absolute,
        description="node_exporter's textfile directory on the host: verify, the workspaces "
        "and the rollout write gpuprov.prom there. Unset: no metrics.",
    ),
}


def _rollout_setting(rule: Any) -> Any:
    """The schema's check for a rollout setting: the rollout's own parser says what is wrong."""

    def check(value: str) -> str | None:
        try:
            rule(value)
        except rollout.RolloutError as error:
            return str(error).split(": ", 1)[1]
        return None

    return check


_BATCH = _rollout_setting(lambda value: rollout.batches([value]))


def _count(description: str) -> AnyOf:
    """A whole number of seconds or minutes; `-e KEY=60` hands it over as text, which is fine."""
    return AnyOf(
        (Int(minimum=0), Str(pattern=r"[0-9]+", hint="a whole number such as 60")),
        description=description,
    )


# Variables that describe the team, so they must hold for all hosts alike.
TEAM_VARIABLES: dict[str, Node] = {
    "gpuprov_image": IMAGE,
    "gpuprov_users": ListOf(USER),
    "gpuprov_registry": REGISTRY,
    "gpuprov_strict": Bool(
        description="true: the check's warnings are errors, as with `gpuprov check --strict`."
    ),
    "gpuprov_report_dir": Str(
        pattern=r"\S(.*\S)?",
        hint="a folder on the controller, e.g. reports or /var/lib/gpuprov/reports",
        description="Where reports go on the controller (verify/<host>.json, "
        "connect/<user>.txt); a relative path is in the folder of site.yml, or under "
        "ansible-runner (AWX too) in the job's artifacts folder.",
    ),
    "gpuprov_rollout_batches": AnyOf(
        (
            ListOf(AnyOf((Int(minimum=1), Str(check=_BATCH))), min_items=1),
            Str(check=_rollout_setting(rollout.batches)),
        ),
        description="playbooks/upgrade.yml's batches, the canary first: hosts or percentages "
        "of the targeted hosts; the last size repeats. On the command line: "
        "-e gpuprov_rollout_batches=1,25%,100%.",
    ),
    "gpuprov_rollout_max_failed": AnyOf(
        (
            Int(minimum=0),
            Str(check=_rollout_setting(lambda value: rollout.allowed_failures(value, 100))),
        ),
        description="How many hosts (or what percentage) may fail or become unreachable "
        "before playbooks/upgrade.yml starts no further batch; 0 stops at the first.",
    ),
    "gpuprov_rollout_busy": Str(
        choices=("wait", "skip", "force"),
        description="What a rollout does with a workspace in use (a kernel busy or used "
        "within gpuprov_rollout_idle_minutes, an SSH session, a running job, a GPU compute "
        "process): wait until "
        "idle (up to gpuprov_rollout_wait seconds, then as skip), skip (it keeps its image "
        "and is reported pending; the next run moves it) or force.",
    ),
    "gpuprov_rollout_idle_minutes": _count(
        "A kernel or terminal used within this many minutes is in use."
    ),
    "gpuprov_rollout_wait": _count(
        "With gpuprov_rollout_busy: wait, the seconds a rollout waits for a workspace in use; "
        "its users get a notice in their SSH sessions first."
    ),
    "gpuprov_rollout_webhook": Secret(
        description="A URL the rollout POSTs JSON to (Slack-compatible: a text field) when a "
        "host's workspaces are in use, naming who moves and who is pending; it often holds "
        "the hook's secret, so keep it in Vault. It is never printed."
    ),
    "gpuprov_rollout_canary_pause": _count(
        "Seconds the canary runs on the new image before the next batch starts; its "
        "workspaces must pass the health gate again after it (0: no pause)."
    ),
    "gpuprov_rollout_failure_action": Str(
        choices=rollout.FAILURE_ACTIONS,
        description="What playbooks/upgrade.yml does once more hosts failed or were lost "
        "than gpuprov_rollout_max_failed allows: stop (later batches do not start; hosts "
        "already moved stay on the new image) or rollback (the hosts this run moved go back "
        "to the images their records name, through the same move and health gate).",
    ),
    "gpuprov_rollout_promote": Str(
        choices=rollout.PROMOTIONS,
        description="After a healthy canary: auto goes on to the next batch; manual ends the "
        "run there, and running the same playbooks/upgrade.yml again promotes the image to "
        "the other hosts (the canary does not move twice).",
    ),
}
ALL_VARIABLES = {**HOST_VARIABLES, **TEAM_VARIABLES}


# What a shared variable is when the inventory does not set it; the check and
# every role (through the gpuprov_default filter) read these, nothing restates them.
DEFAULTS: dict[str, Any] = {
    "gpuprov_port_range": {"first": 20000, "last": 20999},
    "gpuprov_bind_address": "127.0.0.1",
    "gpuprov_data_root": "/srv/gpuprov",
    "gpuprov_volume_roots": [],
    # One user's fork bomb must not take the host's pids: a ceiling no notebook,
    # DataLoader or compiler comes near.
    "gpuprov_workspace_limits": {"pids": 4096},
    "gpuprov_docker_manage": False,
    "gpuprov_docker_host": "unix:///var/run/docker.sock",
    "gpuprov_nvidia_driver_manage": False,
    "gpuprov_container_toolkit_manage": False,
    # Off until the inventory names node_exporter's textfile directory.
    "gpuprov_metrics_dir": "",
    # reports/ beside site.yml, as from a clone (core/reports.py resolves it).
    "gpuprov_report_dir": "reports",
    "gpuprov_rollout_batches": list(rollout.DEFAULT_BATCHES),
    "gpuprov_rollout_max_failed": 0,
    "gpuprov_rollout_busy": "wait",
    "gpuprov_rollout_idle_minutes": 15,
    "gpuprov_rollout_wait": 600,
    "gpuprov_rollout_webhook": "",
    "gpuprov_rollout_canary_pause": 0,
    "gpuprov_rollout_failure_action": "stop",
    "gpuprov_rollout_promote": "auto",
}
# Facts gpuprov's roles set during a run; an inventory that sets one would be overridden.
FACTS = {"gpuprov_team_image_run": "the team_image role"}


def default(name: str) -> Any:
    """The default of a shared ``gpuprov_*`` variable, for the roles."""
    if name not in DEFAULTS:
        raise KeyError(
            f"{name} has no shared default (declared with defaults: {', '.join(sorted(DEFAULTS))})"
        )
    return DEFAULTS[name]
