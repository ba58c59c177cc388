"""Per-user Jupyter and SSH workspaces on the test bed, from inventory to containers.

Three users on two SSH test hosts (each with its own Docker engine), the
workspace image built FROM the bed's Debian base with the team image's real
entrypoint, pushed to the bed's registry and run by digest. The tests are one
story, in order: first run, idempotence, credentials, logins, files, limits,
GPUs, one user's change, a removed user, a taken port, an image upgrade.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest
import yaml
from support.playbooks import task_results
from testbed import CommandError, TestBed
from testbed.paths import cache_dir

from gpuprov.core import image_build
from gpuprov.core.allocation import PortRange, default_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENTRYPOINT = REPO / "roles/team_image/templates/build/gpuprov-workspace.j2"
TEMPLATE = REPO / "roles/team_image/templates/build/Dockerfile.j2"
JUPYTERLAB = "jupyterlab==4.6.6"
PORTS = PortRange(20000, 20999)
PRIORITY_RANGE = {"first": PORTS.first, "last": PORTS.last}
SHADOWED_RANGE = {"first": 30000, "last": 30999}
PROMISES = {"python": "3.11", "torch": "2.13.0+cpu", "cuda": "none"}
HOSTS = ("h100", "oldgpu")
VAULT_PASSWORD = "gpuprov-test-vault"
ALICE_TOKEN = "alice-vault-token-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]
CAROL_PASSWORD = "carol-test-password"
RECAP = re.compile(
    r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


def port(uid: int, kind: str) -> int:
    return default_port(uid, kind, PORTS)


# ---------------------------------------------------------------- the image


def _wheels() -> Path:
    """jupyterlab and its dependencies for Debian 12's Python, downloaded once on this machine."""
    target = cache_dir() / "workspace-wheels" / JUPYTERLAB.replace("==", "-")
    if (target / ".complete").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
         "--implementation", "cp", "--python-version", "3.11", "--dest", str(target),
         *(f"--platform={p}" for p in platforms), JUPYTERLAB],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (target / ".complete").write_text("")
    return target


DOCKERFILE = """\
FROM {base}
COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels {jupyterlab} \\
 && rm -rf /tmp/wheels
COPY gpuprov-workspace /usr/local/bin/gpuprov-workspace
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
{healthcheck}
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/gpuprov-workspace"]
CMD ["jupyter"]
"""


def _healthcheck() -> str:
    """The team image template's HEALTHCHECK instruction, continuation lines included."""
    match = re.search(r"^HEALTHCHECK (?:.*\\\n)*.*$", TEMPLATE.read_text(), re.MULTILINE)
    assert match, f"{TEMPLATE} has no HEALTHCHECK"
    return match.group(0)


def _docker(testbed: TestBed, *args: str, timeout: float = 900) -> str:
    proc = subprocess.run(
        ["docker", *args], env={**os.environ, **testbed.docker_env()},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise CommandError(f"docker {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout.strip()


def build_workspace_image(testbed: TestBed, context: Path) -> str:
    """The workspace image in the bed's outer engine; rebuilt only when its inputs change."""
    wheels = _wheels()
    entrypoint = jinja2.Template(ENTRYPOINT.read_text(), keep_trailing_newline=True).render()
    dockerfile = DOCKERFILE.format(
        base=testbed.base_image, jupyterlab=JUPYTERLAB, healthcheck=_healthcheck()
    )
    base_id = _docker(testbed, "image", "inspect", "-f", "{{.Id}}", testbed.base_image)
    key = hashlib.sha256(
        "\n".join([dockerfile, entrypoint, base_id, *sorted(os.listdir(wheels))]).encode()
    ).hexdigest()[:12]
    tag = f"gpuprov-test/workspace:{key}"
    if subprocess.run(
        ["docker", "image", "inspect", tag], env={**os.environ, **testbed.docker_env()},
        capture_output=True, check=False,
    ).returncode == 0:  # fmt: skip
        return tag
    shutil.copytree(wheels, context / "wheels")
    (context / "Dockerfile").write_text(dockerfile)
    (context / "gpuprov-workspace").write_text(entrypoint)
    (context / "gpuprov-workspace").chmod(0o755)
    _docker(testbed, "build", "-q", "-t", tag, str(context))
    return tag


# ---------------------------------------------------------------- the inventory


class Vaulted(str):
    """A string written to YAML as `!vault |` ciphertext."""


def _vault_representer(dumper: yaml.SafeDumper, value: Vaulted) -> yaml.Node:
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))])
    text = vault.encrypt(str(value)).decode()
    return dumper.represent_scalar("!vault", text, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Vaulted, _vault_representer)


def _key(tmp: Path, name: str) -> tuple[Path, str]:
    path = tmp / f"id_{name}"
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
            check=True,
        )
    return path, (tmp / f"id_{name}.pub").read_text().strip()


@dataclass
class Background:
    """An ansible-playbook run the test does not wait for."""

    proc: subprocess.Popen
    log: Path

    def output(self, timeout: float) -> str:
        self.proc.wait(timeout=timeout)
        return self.log.read_text()

    def kill(self) -> None:
        """SIGKILL for the whole run: the playbook and its forked workers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class Team:
    """The inventory under test, rewritten by each test that changes it."""

    def __init__(self, testbed: TestBed, root: Path, image_ref: str, password_hash: str):
        self.testbed = testbed
        self.root = root
        self.keys = {n: _key(root, n) for n in ("alice", "bob", "carol", "dan", "mallory")}
        reference, digest = image_ref.split("@")
        self.image = {
            "reference": reference,
            "digest": digest,
            "source": "pull",
            "flavour": "cpu",
            "promises": PROMISES,
        }
        self.users = {
            "alice": {
                "name": "alice",
                "uid": 2001,
                "host": "h100",
                "ssh_keys": [self.keys["alice"][1]],
                "workspaces": [{"kind": "jupyter"}, {"kind": "ssh"}],
                "gpus": [0],
                "volumes": [{"source": "/srv/datasets", "target": "/datasets", "read_only": True}],
                "limits": {"memory": "512m", "cpus": 1, "pids": 256, "shm_size": "256m"},
                "jupyter_token": Vaulted(ALICE_TOKEN),
                "ssh_port_forwarding": True,
            },
            "bob": {
                "name": "bob",
                "uid": 2002,
                "host": "h100",
                "ssh_keys": [self.keys["bob"][1]],
                "workspaces": [{"kind": "ssh"}],
                "limits": {"pids": 512, "memory": "unlimited"},
            },
            "carol": {
                "name": "carol",
                "uid": 2003,
                "gid": 2103,
                "host": "oldgpu",
                "workspaces": [{"kind": "jupyter"}],
                "gpus": {"count": 1},
                "jupyter_password_hash": Vaulted(password_hash),
            },
        }
        self.hosts = list(HOSTS)
        self.outputs: list[str] = []

    def write(self) -> Path:
        hosts = {
            h: {**self.testbed.ansible_host_vars(h), "gpuprov_gpu": {"count": 1}}
            for h in self.hosts
        }
        (self.root / "inv/group_vars/all").mkdir(parents=True, exist_ok=True)
        # h100 is in two groups; the priority, not the name order, picks lan_a's range.
        groups = {
            "lan_a": {
                "hosts": {"h100": {}},
                "vars": {"ansible_group_priority": 10, "gpuprov_port_range": PRIORITY_RANGE},
            },
            "lan_b": {"hosts": {"h100": {}}, "vars": {"gpuprov_port_range": SHADOWED_RANGE}},
        }
        (self.root / "inv/hosts.yml").write_text(
            yaml.safe_dump({"all": {"hosts": hosts, "children": groups}})
        )
        team = {
            "gpuprov_image": self.image,
            "workspaces_image": f"{self.image['reference']}@{self.image['digest']}",
            "gpuprov_users": list(self.users.values()),
            # The bed's dockerd may not raise memlock (no CAP_SYS_RESOURCE in this VM).
            "workspaces_ulimits": ["stack:67108864:67108864", "nofile:8192:16384"],
            "workspaces_health_retries": 90,
        }
        (self.root / "inv/group_vars/all/team.yml").write_text(
            yaml.dump(team, Dumper=_Dumper, sort_keys=False)
        )
        (self.root / "vault-pass").write_text(VAULT_PASSWORD)
        return self.root / "inv"

    def command(self, playbooks: tuple[str, ...], extra: tuple[str, ...]) -> tuple[list, dict]:
        inventory = self.write()
        env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        }
        argv = [
            str(BIN / "ansible-playbook"), "-v", "-i", str(inventory),
            "--diff", "--vault-password-file", str(self.root / "vault-pass"),
            "-e", f"workspaces_connect_dir={self.root / 'connect'}", *extra,
            *(playbooks or ("playbooks/check.yml", "playbooks/workspaces.yml",
                            "playbooks/summary.yml")),
        ]  # fmt: skip
        return argv, env

    def start(self, *playbooks: str, extra: tuple[str, ...] = ()) -> Background:
        """A run in the background, in its own process group (a test may kill it).

        Its output goes to a file: ssh's ControlPersist masters outlive the run
        and would hold a pipe open.
        """
        argv, env = self.command(playbooks, extra)
        self.outputs.append("")
        log = self.root / f"run-{len(self.outputs)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )  # fmt: skip
        return Background(proc, log)

    def play(
        self, *playbooks: str, check: bool = True, extra: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess:
        argv, env = self.command(playbooks, extra)
        started = time.monotonic()
        proc = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        self.outputs.append(output)
        print(f"ansible-playbook run {len(self.outputs)}: {time.monotonic() - started:.1f} s")
        log = self.root / f"run-{len(self.outputs)}.log"
        log.write_text(output)
        if check and proc.returncode != 0:
            failures = re.findall(r"^(?:fatal|failed): .*(?:\n {4,}.*)*", output, re.MULTILINE)
            pytest.fail(
                f"ansible-playbook failed ({proc.returncode}), whole output in {log}:\n"
                + "\n".join(f[:3000] for f in failures)
                + "\n"
                + output[-2000:]
            )
        return proc


def recap(proc: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    found = {
        m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
        for m in RECAP.finditer(proc.stdout)
    }
    assert found, proc.stdout[-3000:]
    return found


def changed_items(proc: subprocess.CompletedProcess, task: str) -> list[str]:
    """Loop item labels reported 'changed' under one task of a -v run."""
    section = proc.stdout.split(f"TASK [workspaces : {task}]", 1)[1].split("\nTASK [", 1)[0]
    return re.findall(r"^changed: \[[^\]]+\] => \(item=([^)]*)\)", section, re.MULTILINE)


# ---------------------------------------------------------------- host helpers


def on_host(testbed: TestBed, host: str, command: str, check: bool = True) -> str:
    proc = testbed.ssh(host, command, check=check)
    return proc.stdout.strip()


def inspect(testbed: TestBed, host: str, name: str) -> dict:
    return json.loads(on_host(testbed, host, f"docker inspect {shlex.quote(name)}"))[0]


def container_ids(testbed: TestBed) -> dict[str, str]:
    ids = {}
    for host in HOSTS:
        out = on_host(
            testbed,
            host,
            "docker ps -a --filter label=org.gpuprov.user --format '{{.Names}} {{.ID}}'",
        )
        ids.update(line.split() for line in out.splitlines() if line.strip())
    return ids


def http_status(
    testbed: TestBed, host: str, url: str, token: str | None = None, *more_headers: str
) -> str:
    headers = ["-H", f"Authorization: token {token}"] if token else []
    headers += [arg for header in more_headers for arg in ("-H", header)]
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *headers]
    return subprocess.run(
        testbed.in_host_netns(host, [*argv, url]), capture_output=True, text=True, check=False
    ).stdout


def workspace_ssh(
    testbed: TestBed, team: Team, host: str, user: str, key: str, *command: str
) -> subprocess.CompletedProcess:
    """ssh into the user's workspace; ``command`` may be ssh options and a command."""
    uid = team.users.get(user, {}).get("uid", 2001)
    argv = [
        "ssh", "-i", str(team.keys[key][0]), "-p", str(port(uid, "ssh")),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", f"{user}@127.0.0.1", *command,
    ]  # fmt: skip
    # Its own /dev/null: ssh -W makes stdin non-blocking, and on a shared one that
    # outlives it, every later ansible-playbook refuses to start.
    return subprocess.run(
        testbed.in_host_netns(host, argv), capture_output=True, text=True, timeout=60,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def host_key(testbed: TestBed, host: str, uid: int) -> str:
    """The host key the SSH workspace presents, as ssh-keyscan sees it."""
    argv = ["ssh-keyscan", "-t", "ed25519", "-p", str(port(uid, "ssh")), "127.0.0.1"]
    out = subprocess.run(
        testbed.in_host_netns(host, argv), capture_output=True, text=True, timeout=30, check=False
    ).stdout
    keys = [line.split(None, 1)[1] for line in out.splitlines() if "ssh-ed25519" in line]
    assert keys, f"no host key from the workspace: {out!r}"
    return keys[0]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def images(testbed: TestBed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two workspace images in the registry by digest: v1, and v2 (the 'upgrade')."""
    started = time.monotonic()
    local = build_workspace_image(testbed, tmp_path_factory.mktemp("workspace-image"))
    built = time.monotonic() - started
    v1 = testbed.push_image(local, "gpuprov-test/workspace:1")
    context = tmp_path_factory.mktemp("workspace-image-v2")
    (context / "Dockerfile").write_text(f"FROM {local}\nLABEL org.gpuprov.test.upgrade=2\n")
    _docker(testbed, "build", "-q", "-t", f"{local}-v2", str(context))
    v2 = testbed.push_image(f"{local}-v2", "gpuprov-test/workspace:2")
    # v3, v4: the next releases; broken: starts, but no workspace ever answers. They carry
    # the pin's labels, as images from gpuprov's template do (a rollout checks them).
    pinned = "".join(f'LABEL "{k}"="{v}"\n' for k, v in image_build.labels(PROMISES).items())
    for name, lines in (
        ("v3", "LABEL org.gpuprov.test.upgrade=3"),
        ("v4", "LABEL org.gpuprov.test.upgrade=4"),
        ("broken", 'LABEL org.gpuprov.test.upgrade=broken\nENTRYPOINT ["/bin/sh", "-c", "exit 3"]'),
    ):
        (context / "Dockerfile").write_text(f"FROM {local}\n{pinned}{lines}\n")
        _docker(testbed, "build", "-q", "-t", f"{local}-{name}", str(context))
    print(f"workspace image: build {built:.1f} s, total {time.monotonic() - started:.1f} s")
    # carol's password hash, made by jupyter_server itself inside the image.
    hashed = _docker(
        testbed, "run", "--rm", "--entrypoint", "/opt/venv/bin/python", local, "-c",
        f"from jupyter_server.auth import passwd; print(passwd({CAROL_PASSWORD!r}))",
    )  # fmt: skip
    return {
        "v1": v1,
        "v2": v2,
        "v3": testbed.push_image(f"{local}-v3", "gpuprov-test/workspace:3"),
        "v4": testbed.push_image(f"{local}-v4", "gpuprov-test/workspace:4"),
        "broken": testbed.push_image(f"{local}-broken", "gpuprov-test/workspace:broken"),
        "password_hash": hashed,
    }


@pytest.fixture(scope="module")
def team(testbed: TestBed, images, tmp_path_factory: pytest.TempPathFactory):
    team = Team(testbed, tmp_path_factory.mktemp("team"), images["v1"], images["password_hash"])
    team.first = team.play()
    yield team
    for host in HOSTS:
        on_host(
            testbed, host,
            "docker rm -f $(docker ps -aq --filter label=org.gpuprov.user) 2>/dev/null; true",
            check=False,
        )  # fmt: skip


# ---------------------------------------------------------------- the story


def test_first_run_starts_every_workspace(team, testbed):
    assert set(recap(team.first)) >= set(HOSTS)
    assert sorted(container_ids(testbed)) == [
        "gpuprov-alice-jupyter", "gpuprov-alice-ssh", "gpuprov-bob-ssh", "gpuprov-carol-jupyter",
    ]  # fmt: skip
    for name in container_ids(testbed):
        host = "oldgpu" if "carol" in name else "h100"
        assert inspect(testbed, host, name)["State"]["Running"], name


def test_the_images_healthcheck_sees_jupyter_and_sshd_answer(team, testbed):
    for name in ("gpuprov-alice-jupyter", "gpuprov-bob-ssh"):
        deadline = time.monotonic() + 90
        while True:
            health = inspect(testbed, "h100", name)["State"]["Health"]
            if health["Status"] != "starting" or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert health["Status"] == "healthy", (name, health["Log"][-1:])


def test_second_run_changes_nothing(team):
    again = team.play()
    assert {h: r["changed"] for h, r in recap(again).items()} == {"h100": 0, "oldgpu": 0}


def test_plan_ansible_and_the_container_agree_for_a_host_in_two_groups(team, testbed):
    inventory = str(team.root / "inv")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    seen = json.loads(
        subprocess.run(
            [str(BIN / "ansible-inventory"), "-i", inventory, "--host", "h100"],
            capture_output=True, text=True, check=True, env=env,
        ).stdout
    )  # fmt: skip
    assert seen["gpuprov_port_range"] == PRIORITY_RANGE
    planned = json.loads(
        subprocess.run(
            [str(BIN / "gpuprov"), "plan", "-i", inventory, "-l", "h100", "--json"],
            capture_output=True, text=True, check=True, env=env,
        ).stdout
    )  # fmt: skip
    ports = {w["user"] + "-" + w["kind"]: w["port"] for w in planned}
    assert ports["alice-jupyter"] == port(2001, "jupyter")
    for name, planned_port in ports.items():
        bindings = inspect(testbed, "h100", f"gpuprov-{name}")["HostConfig"]["PortBindings"]
        published = {int(b["HostPort"]) for bound in bindings.values() for b in bound}
        assert published == {planned_port}, name


def test_jupyter_answers_with_the_token_and_refuses_without(team, testbed):
    alice = f"http://127.0.0.1:{port(2001, 'jupyter')}/api/status"
    assert http_status(testbed, "h100", alice, ALICE_TOKEN) == "200"
    assert http_status(testbed, "h100", alice) == "403"
    assert http_status(testbed, "h100", alice, "not-the-token") == "403"
    carol_token = on_host(testbed, "oldgpu", "cat /etc/gpuprov/secrets/carol/jupyter-token")
    assert len(carol_token) == 48
    carol = f"http://127.0.0.1:{port(2003, 'jupyter')}/api/status"
    assert http_status(testbed, "oldgpu", carol, carol_token) == "200"
    assert http_status(testbed, "oldgpu", carol) == "403"


def test_jupyter_refuses_a_host_header_it_is_not_reached_by(team, testbed):
    """DNS rebinding: a page on evil.example that resolves to the host still names itself
    in the Host header; a workspace bound to loopback answers loopback and the host's own
    names only (an address other than loopback is not how anyone reaches it)."""
    url = f"http://127.0.0.1:{port(2001, 'jupyter')}/api/status"
    for name in ("evil.example", testbed.host_address("h100")):
        assert http_status(testbed, "h100", url, ALICE_TOKEN, f"Host: {name}") == "403", name
    for name in ("localhost", "h100"):
        assert http_status(testbed, "h100", url, ALICE_TOKEN, f"Host: {name}:8888") == "200", name


def test_token_files_belong_to_root_and_the_user_only(team, testbed):
    stat = "stat -c '%a %u %g' /etc/gpuprov/secrets/{0}/jupyter-token /etc/gpuprov/secrets/{0}"
    assert on_host(testbed, "h100", stat.format("alice")).split("\n") == [
        "400 2001 0", "700 2001 0",
    ]  # fmt: skip
    assert on_host(testbed, "h100", "cat /etc/gpuprov/secrets/alice/jupyter-token") == ALICE_TOKEN


def test_jupyter_password_hash_from_vault_logs_in(team, testbed):
    base = f"http://127.0.0.1:{port(2003, 'jupyter')}"
    jar = team.root / "carol-cookies"
    script = (
        f"curl -s -c {jar} -b {jar} -o /dev/null {base}/login && "
        f"xsrf=$(awk '$6==\"_xsrf\"{{print $7}}' {jar}) && "
        f"for pw in wrong-password {CAROL_PASSWORD}; do curl -s -c {jar} -b {jar} -o /dev/null "
        f"-w '%{{http_code}} ' --data-urlencode _xsrf=$xsrf --data-urlencode password=$pw "
        f"{base}/login; done"
    )
    out = subprocess.run(
        testbed.in_host_netns("oldgpu", ["sh", "-c", script]), capture_output=True, text=True
    ).stdout.split()
    assert out == ["401", "302"], out  # refused with the wrong password, in with the right one


def test_ssh_login_with_the_right_key_as_the_users_uid(team, testbed):
    good = workspace_ssh(testbed, team, "h100", "alice", "alice", "id -u; id -g; id -un")
    assert good.returncode == 0, good.stderr
    assert good.stdout.split() == ["2001", "2001", "alice"]
    wrong = workspace_ssh(testbed, team, "h100", "alice", "mallory", "id -u")
    assert wrong.returncode == 255 and "Permission denied" in wrong.stderr
    other = workspace_ssh(testbed, team, "h100", "alice", "bob", "id -u")
    assert other.returncode == 255


def test_ssh_forwarding_is_refused_by_default_and_allowed_when_the_user_asks(team, testbed):
    """A real `ssh -W` to the workspace's own sshd: bob's entry says nothing, alice's
    says ssh_port_forwarding: true."""
    forward = ("-o", "ExitOnForwardFailure=yes", "-W", "127.0.0.1:2222")
    refused = workspace_ssh(testbed, team, "h100", "bob", "bob", *forward)
    assert refused.returncode == 255 and "SSH-2.0" not in refused.stdout
    assert "forwarding failed" in refused.stderr, refused.stderr
    allowed = workspace_ssh(testbed, team, "h100", "alice", "alice", *forward)
    assert allowed.stdout.startswith("SSH-2.0-OpenSSH"), (allowed.stdout, allowed.stderr)
    config = on_host(testbed, "h100", "docker exec gpuprov-bob-ssh cat /tmp/gpuprov-sshd_config")
    for line in ("AllowTcpForwarding no", "AllowAgentForwarding no", "X11Forwarding no",
                 "AllowStreamLocalForwarding no", "PermitTunnel no", "MaxAuthTries 3",
                 "LoginGraceTime 30", "StrictModes yes"):  # fmt: skip
        assert line in config.splitlines(), config


def test_sshd_refuses_keys_another_account_could_write(team, testbed):
    """StrictModes: a world-writable authorized_keys is refused, the right modes log in.

    World-write, not group-write: Debian's sshd accepts a group-writable file whose
    group has the owner as its only member (a user-private group), which bob's is."""
    keys = "docker exec gpuprov-bob-ssh chmod {} /gpuprov/ssh/authorized_keys"
    on_host(testbed, "h100", keys.format("o+w"))
    try:
        refused = workspace_ssh(testbed, team, "h100", "bob", "bob", "id -u")
    finally:
        on_host(testbed, "h100", keys.format("0600"))
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    again = workspace_ssh(testbed, team, "h100", "bob", "bob", "id -u")
    assert again.returncode == 0 and again.stdout.strip() == "2002", again.stderr


def test_one_users_workspace_cannot_open_another_users_ports(team, testbed):
    """Each user has a bridge network of their own: alice's notebook reaches her own SSH
    workspace, not bob's, whose address it knows."""

    def address(name: str) -> str:
        info = inspect(testbed, "h100", name)
        network = info["HostConfig"]["NetworkMode"]
        assert network == f"gpuprov-{info['Config']['Labels']['org.gpuprov.user']}", name
        return info["NetworkSettings"]["Networks"][network]["IPAddress"]

    probe = (
        "import socket, sys\n"
        "try:\n print(socket.create_connection((sys.argv[1], 2222), timeout=3).recv(7).decode())\n"
        "except OSError as error:\n print('refused', error)"
    )

    def reach(ip: str) -> str:
        command = f"docker exec gpuprov-alice-jupyter python3 -c {shlex.quote(probe)} {ip}"
        return on_host(testbed, "h100", command)

    assert reach(address("gpuprov-alice-ssh")).startswith("SSH-2.0")
    assert reach(address("gpuprov-bob-ssh")).startswith("refused")


def test_files_written_inside_land_on_the_host_volume_as_the_user(team, testbed):
    for user in ("alice", "bob"):
        done = workspace_ssh(testbed, team, "h100", user, user, "echo hello > ~/probe.txt")
        assert done.returncode == 0, done.stderr
        stat = on_host(testbed, "h100", f"stat -c '%u:%g %s' /srv/gpuprov/{user}/home/probe.txt")
        uid = team.users[user]["uid"]
        assert stat == f"{uid}:{uid} 6"
    cannot = workspace_ssh(testbed, team, "h100", "alice", "alice", "touch /datasets/x")
    assert cannot.returncode != 0 and "Read-only file system" in cannot.stderr


def test_security_options_and_limits_in_docker_inspect(team, testbed):
    for host, name in [
        ("h100", "gpuprov-alice-jupyter"), ("h100", "gpuprov-alice-ssh"),
        ("h100", "gpuprov-bob-ssh"), ("oldgpu", "gpuprov-carol-jupyter"),
    ]:  # fmt: skip
        info = inspect(testbed, host, name)
        config, hc = info["Config"], info["HostConfig"]
        assert hc["SecurityOpt"] == ["no-new-privileges"], name
        assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"], name
        assert hc["Privileged"] is False, name
        assert hc["NetworkMode"] not in ("host",) and hc["PidMode"] != "host", name
        assert hc["IpcMode"] != "host" and hc["UTSMode"] != "host", name
        assert hc["PidsLimit"] and hc["PidsLimit"] > 0, name
        # CIS 5.10/5.11: every workspace has a memory and CPU cap but bob, who lifts memory.
        assert hc["NanoCpus"] > 0, name
        assert hc["Memory"] > 0 or name == "gpuprov-bob-ssh", name
        assert not hc["Devices"], name  # GPUs come through device requests, not devices
        assert not any("docker.sock" in m["Source"] for m in info["Mounts"]), name
        assert hc["RestartPolicy"]["Name"] == "unless-stopped", name
        assert hc["ReadonlyRootfs"] is True, name
        assert hc["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=1g"}, name
        assert hc["LogConfig"] == {
            "Type": "json-file", "Config": {"max-size": "20m", "max-file": "5"},
        }, name  # fmt: skip
        assert {u["Name"]: (u["Soft"], u["Hard"]) for u in hc["Ulimits"]} == {
            "stack": (67108864, 67108864), "nofile": (8192, 16384),
        }  # fmt: skip
        for bindings in hc["PortBindings"].values():
            assert [b["HostIp"] for b in bindings] == ["127.0.0.1"], name
        labels = config["Labels"]
        assert labels["org.gpuprov.image"].endswith(team.image["digest"]), name
        assert {"org.gpuprov.user", "org.gpuprov.kind", "org.gpuprov.spec"} <= set(labels)
        assert not any(ALICE_TOKEN in e for e in config["Env"]), name
    alice = inspect(testbed, "h100", "gpuprov-alice-jupyter")["HostConfig"]
    assert (alice["Memory"], alice["PidsLimit"], alice["NanoCpus"]) == (512 << 20, 256, 10**9)
    assert alice["ShmSize"] == 256 << 20
    assert inspect(testbed, "h100", "gpuprov-alice-jupyter")["Config"]["User"] == "2001:2001"
    assert inspect(testbed, "oldgpu", "gpuprov-carol-jupyter")["Config"]["User"] == "2003:2103"
    bob = inspect(testbed, "h100", "gpuprov-bob-ssh")["HostConfig"]
    assert (bob["PidsLimit"], bob["Memory"]) == (512, 0)
    # carol sets no limits: the host's pids default holds her, and memory and CPUs
    # sized to the host: all but a tenth of its memory (1 to 8 GiB), every CPU below 8.
    carol = inspect(testbed, "oldgpu", "gpuprov-carol-jupyter")["HostConfig"]
    assert carol["PidsLimit"] == 4096
    size = json.loads(on_host(testbed, "oldgpu", "docker info --format '{{json .}}'"))
    total, ncpu = size["MemTotal"], size["NCPU"]
    reserve = min(max(total // 10, 1 << 30), 8 << 30)
    assert carol["Memory"] == (total - reserve) // (1 << 20) * (1 << 20)
    assert carol["NanoCpus"] == (ncpu - 1 if ncpu >= 8 else ncpu) * 10**9
    assert bob["ShmSize"] == 8 << 30  # the role's default for PyTorch DataLoaders


# CIS Docker Benchmark 1.6, section 5 (what docker-bench-security's container runtime
# checks read from `docker inspect`): host trees a container must not mount (5.5).
CIS_SENSITIVE = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")


def cis_section5(info: dict) -> list[str]:
    """The section 5 checks one workspace container fails, each as 'N.N what'."""
    hc, config = info["HostConfig"], info["Config"]
    user = config["Labels"]["org.gpuprov.user"]
    failed = []
    if hc["CapAdd"] or hc["CapDrop"] != ["ALL"]:
        failed.append("5.3 capabilities not restricted")
    if hc["Privileged"]:
        failed.append("5.4 privileged")
    for mount in info["Mounts"]:
        # docker-bench flags the trees themselves; gpuprov's read-only secret files under
        # /etc/gpuprov are fine, anything writable below a tree is not.
        source = os.path.normpath(mount["Source"])
        below = any(source.startswith(f"{tree}/") for tree in CIS_SENSITIVE[1:])
        if source in CIS_SENSITIVE or (below and mount["RW"]):
            failed.append(f"5.5 host system directory mounted: {mount['Source']}")
        if mount.get("Propagation") in ("shared", "rshared"):
            failed.append(f"5.19 shared mount propagation: {mount['Source']}")
        if mount["Source"].endswith(".sock"):
            failed.append(f"5.31 a socket mounted: {mount['Source']}")
    bindings = [b for bound in (hc["PortBindings"] or {}).values() for b in bound or ()]
    if any(int(b["HostPort"]) < 1024 for b in bindings):
        failed.append("5.7 a privileged host port")
    if hc["NetworkMode"] == "host":
        failed.append("5.9 host network")
    if hc["NetworkMode"] in ("default", "bridge"):
        failed.append("5.29 on the default docker0 bridge")
    # bob's entry lifts memory on purpose (memory: unlimited, documented in docs/inventory.md).
    if hc["Memory"] <= 0 and user != "bob":
        failed.append("5.10 no memory limit")
    if not (hc["NanoCpus"] or hc["CpuQuota"] or hc["CpuShares"]):
        failed.append("5.11 no CPU limit")
    if not hc["ReadonlyRootfs"]:
        failed.append("5.12 root filesystem writable")
    if any(b["HostIp"] in ("", "0.0.0.0", "::") for b in bindings):
        failed.append("5.13 a port bound to every interface")
    if hc["PidMode"] == "host":
        failed.append("5.15 host PID namespace")
    if hc["IpcMode"] == "host":
        failed.append("5.16 host IPC namespace")
    if hc["Devices"]:
        failed.append("5.17 host devices exposed")
    if hc["UTSMode"] == "host":
        failed.append("5.20 host UTS namespace")
    if any("seccomp=unconfined" in opt for opt in hc["SecurityOpt"] or ()):
        failed.append("5.21 seccomp disabled")
    if hc["CgroupParent"]:
        failed.append("5.24 a cgroup parent of its own")
    if "no-new-privileges" not in (hc["SecurityOpt"] or ()):
        failed.append("5.25 new privileges allowed")
    if (config.get("Healthcheck") or {}).get("Test", ["NONE"])[0] == "NONE":
        failed.append("5.26 no health check")
    if not hc["PidsLimit"] or hc["PidsLimit"] <= 0:
        failed.append("5.28 no PIDs limit")
    if hc["UsernsMode"] == "host":
        failed.append("5.30 host user namespace")
    if config["User"] in ("", "0", "root") or config["User"].startswith(("0:", "root:")):
        failed.append("4.1 runs as root")
    return failed


def test_every_workspace_container_passes_the_cis_runtime_checks(team, testbed):
    """docker-bench-security's section 5 over every workspace on every host. sshd in the
    SSH workspaces is the one documented exception (5.6, docs/workspaces.md)."""
    failures, seen = {}, 0
    for host in HOSTS:
        names = on_host(
            testbed, host, "docker ps -a --filter label=org.gpuprov.user --format '{{.Names}}'"
        ).split()
        for name in names:
            seen += 1
            failed = cis_section5(inspect(testbed, host, name))
            if failed:
                failures[f"{host}/{name}"] = failed
    assert seen >= 4, f"only {seen} workspace containers on {HOSTS}"
    assert not failures, failures


def test_the_cis_checks_catch_what_they_look_for(team, testbed):
    """The section 5 reader fails a real container started the way the benchmark forbids."""
    image = inspect(testbed, "h100", "gpuprov-alice-jupyter")["Config"]["Image"]
    name = "gpuprov-cis-negative"
    on_host(testbed, "h100", f"docker rm -f {name} >/dev/null 2>&1 || true")
    on_host(
        testbed, "h100",
        f"docker create --name {name} --label org.gpuprov.user=mallory --user 0 "
        f"--privileged=false --cap-add NET_ADMIN --network host --pid host "
        f"-v /etc:/host-etc:ro -v /var/run/docker.sock:/var/run/docker.sock "
        f"--security-opt seccomp=unconfined --no-healthcheck {shlex.quote(image)} true",
    )  # fmt: skip
    try:
        failed = {item.split()[0] for item in cis_section5(inspect(testbed, "h100", name))}
    finally:
        on_host(testbed, "h100", f"docker rm -f {name}")
    assert {"5.3", "5.5", "5.9", "5.10", "5.11", "5.12", "5.15", "5.21", "5.25", "5.26",
            "5.28", "5.31", "4.1"} <= failed, failed  # fmt: skip


def test_gpus_by_index_and_count_reach_the_runtime_hook(team, testbed):
    ids = {
        name: inspect(testbed, "oldgpu" if "carol" in name else "h100", name)["Id"]
        for name in ("gpuprov-alice-jupyter", "gpuprov-bob-ssh", "gpuprov-carol-jupyter")
    }
    h100 = [
        json.loads(x)
        for x in on_host(testbed, "h100", "cat /var/log/gpuprov-fake/hook.log").splitlines()
    ]
    old = [
        json.loads(x)
        for x in on_host(testbed, "oldgpu", "cat /var/log/gpuprov-fake/hook.log").splitlines()
    ]
    asked = {r["container_id"]: r["NVIDIA_VISIBLE_DEVICES"] for r in h100 + old}
    assert asked[ids["gpuprov-alice-jupyter"]] == "0"
    assert asked[ids["gpuprov-carol-jupyter"]] == "0"
    assert ids["gpuprov-bob-ssh"] not in asked


def test_connection_notes_tell_users_how_to_connect_without_secrets(team, testbed):
    notes = team.root / "connect"
    assert sorted(p.name for p in notes.iterdir()) == ["alice.txt", "bob.txt", "carol.txt"]
    alice = (notes / "alice.txt").read_text()
    address = testbed.host_address("h100")
    assert f"ssh -J {address} -p {port(2001, 'ssh')} alice@127.0.0.1" in alice
    assert (
        f"Host gpuprov-alice-h100\n      HostName 127.0.0.1\n      Port {port(2001, 'ssh')}"
        in alice
    )
    assert f"http://127.0.0.1:{port(2001, 'jupyter')}/lab" in alice
    carol = (notes / "carol.txt").read_text()
    assert "cat /etc/gpuprov/secrets/carol/jupyter-token" in carol
    for note in notes.iterdir():
        assert note.stat().st_mode & 0o777 == 0o600
    assert notes.stat().st_mode & 0o777 == 0o700
    assert ALICE_TOKEN not in alice
    assert "gpuprov workspaces of alice on h100" in team.first.stdout


def test_changing_one_user_recreates_only_that_users_container(team, testbed):
    before = container_ids(testbed)
    team.users["bob"]["limits"] = {"pids": 1024}
    proc = team.play()
    after = container_ids(testbed)
    assert changed_items(proc, "Start the workspace containers") == [
        f"bob ssh on 127.0.0.1:{port(2002, 'ssh')}"
    ]
    assert after["gpuprov-bob-ssh"] != before["gpuprov-bob-ssh"]
    assert {k: v for k, v in after.items() if "bob" not in k} == {
        k: v for k, v in before.items() if "bob" not in k
    }
    assert inspect(testbed, "h100", "gpuprov-bob-ssh")["HostConfig"]["PidsLimit"] == 1024


def test_removing_a_user_removes_the_containers_and_keeps_the_data(team, testbed):
    del team.users["bob"]
    proc = team.play()
    assert "gpuprov-bob-ssh" not in container_ids(testbed)
    said = " ".join(proc.stdout.split())  # the YAML callback folds long messages
    assert "nothing was deleted: the data stays in /srv/gpuprov/bob on h100." in said
    assert on_host(testbed, "h100", "cat /srv/gpuprov/bob/home/probe.txt") == "hello"
    assert recap(team.play())["h100"]["changed"] == 0


def test_a_port_taken_by_something_else_is_a_clear_error(team, testbed):
    taken = port(2010, "ssh")
    listener = on_host(
        testbed, "oldgpu",
        "nohup python3 -c 'import socket, time; s = socket.socket(); "
        f"s.bind((\"127.0.0.1\", {taken})); s.listen(); time.sleep(900)' "
        ">/dev/null 2>&1 & echo $!",
    )  # fmt: skip
    try:
        time.sleep(0.5)
        team.users["dan"] = {
            "name": "dan", "uid": 2010, "host": "oldgpu",
            "ssh_keys": [team.keys["dan"][1]], "workspaces": [{"kind": "ssh"}],
        }  # fmt: skip
        proc = team.play(check=False)
        assert proc.returncode != 0
        said = " ".join(proc.stdout.split())
        assert (
            f"port {taken} on 127.0.0.1 is already in use by process python3 (pid {listener}): "
            "user 'dan' needs it for the ssh workspace" in said
        ), proc.stdout[-4000:]
        assert "gpuprov-dan-ssh" not in container_ids(testbed)
    finally:
        on_host(testbed, "oldgpu", f"kill {listener}", check=False)
        team.users.pop("dan", None)


def test_an_image_upgrade_recreates_on_the_pin_and_keeps_host_keys_and_data(team, testbed, images):
    key_before = host_key(testbed, "h100", 2001)
    before = container_ids(testbed)
    team.image["digest"] = images["v2"].split("@")[1]
    proc = team.play()
    after = container_ids(testbed)
    assert sorted(changed_items(proc, "Start the workspace containers")) == sorted([
        f"alice jupyter on 127.0.0.1:{port(2001, 'jupyter')}",
        f"alice ssh on 127.0.0.1:{port(2001, 'ssh')}",
        f"carol jupyter on 127.0.0.1:{port(2003, 'jupyter')}",
    ])  # fmt: skip
    assert all(after[name] != before[name] for name in after)
    for host, name in [("h100", "gpuprov-alice-ssh"), ("oldgpu", "gpuprov-carol-jupyter")]:
        pinned = on_host(testbed, host, f"docker image inspect -f '{{{{.Id}}}}' {images['v2']}")
        assert inspect(testbed, host, name)["Image"] == pinned
    assert host_key(testbed, "h100", 2001) == key_before
    login = workspace_ssh(testbed, team, "h100", "alice", "alice", "cat ~/probe.txt")
    assert login.stdout.strip() == "hello", login.stderr
    alice = f"http://127.0.0.1:{port(2001, 'jupyter')}/api/status"
    assert http_status(testbed, "h100", alice, ALICE_TOKEN) == "200"
    assert recap(team.play())["h100"]["changed"] == 0


# ---------------------------------------------------------------- rollouts

# The bed has no GPU (the host gates fail on it), the test images no torch (the
# audit and the torch probe fail on them) and little disk; the gates' own tests
# turn them back on. The default batches: h100 is the canary, oldgpu follows.
ROLLOUT = (
    "-e", "team_image_min_free=64m", "-e", "rollout_health_torch=false",
    "-e", "rollout_min_healthy_time=2",
)  # fmt: skip
NO_GATES = (*ROLLOUT, "-e", "rollout_verify=false", "-e", "team_image_audit=false")


def running_on(testbed: TestBed, image_ref: str, hosts: tuple[str, ...] = HOSTS) -> dict[str, bool]:
    """Whether each workspace container runs `image_ref` (compared by image ID on its host)."""
    found = {}
    for host in hosts:
        wanted = on_host(testbed, host, f"docker image inspect -f '{{{{.Id}}}}' {image_ref}")
        for name in on_host(
            testbed, host, "docker ps -a --filter label=org.gpuprov.user --format '{{.Names}}'"
        ).split():
            found[name] = inspect(testbed, host, name)["Image"] == wanted
    return found


def pin(team: Team, image_ref: str) -> None:
    team.image["digest"] = image_ref.split("@")[1]


def test_a_rollout_moves_one_batch_after_the_other(team, testbed, images):
    pin(team, images["v3"])
    before = container_ids(testbed)
    preview = team.play("playbooks/upgrade.yml", extra=(*NO_GATES, "--check"))
    assert {h: c["changed"] for h, c in recap(preview).items()} == {"h100": 1, "oldgpu": 1}
    assert f"to {images['v3']} behind the health checks" in " ".join(preview.stdout.split())
    assert container_ids(testbed) == before
    proc = team.play(
        "playbooks/upgrade.yml", extra=(*NO_GATES, "-e", "gpuprov_rollout_canary_pause=1")
    )
    # The canary (h100) ran a second on the new image and passed the gate again; then oldgpu.
    again = "Check the canary's workspaces again before promoting the image]"
    assert proc.stdout.count(again) == 1
    assert re.search(re.escape(again) + r" \*+\nok: \[h100\]", proc.stdout)
    assert running_on(testbed, images["v3"]) == {
        "gpuprov-alice-jupyter": True,
        "gpuprov-alice-ssh": True,
        "gpuprov-carol-jupyter": True,
    }
    # Batch size 1: Ansible plays the rollout once per batch, h100 (first in the
    # inventory) alone, then oldgpu alone.
    batches = [b.split("PLAY [")[0] for b in proc.stdout.split("PLAY [Roll the team image")[1:]]
    assert [("[h100]" in b, "[oldgpu]" in b) for b in batches] == [(True, False), (False, True)]
    alice = f"http://127.0.0.1:{port(2001, 'jupyter')}/api/status"
    assert http_status(testbed, "h100", alice, ALICE_TOKEN) == "200"
    for extra in (NO_GATES, (*NO_GATES, "--check")):
        again = team.play("playbooks/upgrade.yml", extra=extra)
        assert {h: c["changed"] for h, c in recap(again).items()} == {"h100": 0, "oldgpu": 0}


@pytest.mark.parametrize(
    ("gate", "options", "stopped_at"),
    [
        ("audit", (*ROLLOUT, "-e", "rollout_verify=false"), "Stop when the team image failed"),
        ("host gates", (*ROLLOUT, "-e", "team_image_audit=false"), "Fail the host with the"),
        # The pin says the image unpacks to 1 PiB: no host has room to pull it.
        ("disk", NO_GATES, "Check the host's copy of the image, or the room to pull it: not "
         "enough disk space for "),
    ],
)  # fmt: skip
def test_the_preflight_refuses_the_rollout_listing_every_blocking_host(
    team, testbed, images, gate, options, stopped_at
):
    before = container_ids(testbed)
    pin(team, images["broken"])
    if gate == "disk":
        team.image["size"] = 1024**5
        # Room is weighed before a pull only: the earlier variants pulled this image.
        for host in HOSTS:
            on_host(testbed, host, f"docker image rm {images['broken']}", check=False)
    try:
        proc = team.play("playbooks/upgrade.yml", check=False, extra=options)
    finally:
        pin(team, images["v3"])
        team.image.pop("size", None)
    said = " ".join(proc.stdout.split())
    if gate == "disk":
        assert "needed (the image unpacks to 1024.0 TiB, and its layers download beside it)" in (
            said
        ), said[-4000:]
    if gate == "audit":
        assert len(task_results(proc.stdout, "Audit the team image before anything uses it")) == 1
    assert proc.returncode != 0
    assert (
        "pre-flight refused the rollout, 2 of 2 host(s) would block it, so no workspace was "
        in (said)
    ), said[-4000:]
    assert f"h100: {stopped_at}" in said
    assert f"oldgpu: {stopped_at}" in said
    assert container_ids(testbed) == before, f"the {gate} gate must stop before any change"
    assert "PLAY [Roll the team image" not in proc.stdout, "no batch after a refused pre-flight"


def test_a_failed_health_check_rolls_the_host_back_and_stops_the_rollout(team, testbed, images):
    before = container_ids(testbed)
    pin(team, images["broken"])
    try:
        proc = team.play(
            "playbooks/upgrade.yml",
            check=False,
            extra=(*NO_GATES, "-e", "workspaces_health_retries=10"),
        )
    finally:
        pin(team, images["v3"])
    said = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    # Which health step notices depends on the moment: docker-proxy holds the port
    # while the container runs between crashes, so Jupyter's check may be the one.
    assert re.search(
        "rollout stopped on h100: (Wait for the workspace port to open|Check that Jupyter "
        "answers with the token and refuses without it): ",
        said,
    ), said[-4000:]
    assert f"Its workspaces are back on {images['v3']} and answer" in said
    assert proc.stdout.count("PLAY [Roll the team image") == 1, "no batch after the canary"
    assert history(testbed, "h100")[-1]["outcome"] == "rolled_back"
    # h100, the canary, tried the broken image and is back on v3; oldgpu never moved.
    after = container_ids(testbed)
    assert after["gpuprov-alice-jupyter"] != before["gpuprov-alice-jupyter"]
    assert after["gpuprov-carol-jupyter"] == before["gpuprov-carol-jupyter"]
    assert all(running_on(testbed, images["v3"]).values())
    alice = f"http://127.0.0.1:{port(2001, 'jupyter')}/api/status"
    assert http_status(testbed, "h100", alice, ALICE_TOKEN) == "200"
    login = workspace_ssh(testbed, team, "h100", "alice", "alice", "cat ~/probe.txt")
    assert login.stdout.strip() == "hello", login.stderr
    assert recap(team.play())["h100"]["changed"] == 0


def history(testbed: TestBed, host: str) -> list[dict]:
    lines = on_host(testbed, host, "cat /var/lib/gpuprov/rollout/history.jsonl", check=False)
    return [json.loads(line) for line in lines.splitlines() if line.strip()]


def has_state(testbed: TestBed, host: str) -> bool:
    probe = "test -f /var/lib/gpuprov/rollout/state.json && echo yes"
    return on_host(testbed, host, probe, check=False) == "yes"


# What Jupyter itself writes into a home while it runs (kernel and server runtime
# files, the lab workspace layout); every other file must stay byte for byte.
JUPYTER_WRITES = re.compile(r"/\.local/share/jupyter/runtime/|/\.jupyter/lab/workspaces/")


def home_checksums(testbed: TestBed) -> dict[str, str]:
    """sha256 of every file in every workspace home on the hosts, Jupyter's own files aside."""
    sums = {}
    for host in HOSTS:
        out = on_host(
            testbed, host,
            "cd /srv/gpuprov && find . -path './*/home/*' -type f -print0 | xargs -0 -r sha256sum",
        )  # fmt: skip
        for line in out.splitlines():
            digest, path = line.split(maxsplit=1)
            if not JUPYTER_WRITES.search(path):
                sums[f"{host}:{path}"] = digest
    return sums


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def lose_mid_rollout(
    team: Team, testbed: TestBed, host: str, extra: tuple[str, ...]
) -> tuple[int | None, str]:
    """Run upgrade.yml and stop `host` once its record says it moves: the run's exit
    status and its output on one line."""
    run = team.start("playbooks/upgrade.yml", extra=extra)
    try:
        wait_for(lambda: has_state(testbed, host), 300, f"{host}'s rollout record")
        testbed.stop_host(host)
        output = run.output(timeout=600)
    finally:
        run.kill()
    return run.proc.returncode, " ".join(output.split())


def test_a_host_lost_mid_rollout_stops_it_within_the_failure_budget(team, testbed, images):
    """Batches of 2 over h100, notoolkit, oldgpu (the inventory's order): h100 goes down
    while its batch runs, notoolkit of the same batch finishes, oldgpu's batch never starts;
    once h100 is back, the same command resumes it from its record and finishes the job."""
    sums = home_checksums(testbed)
    team.hosts.append("notoolkit")  # a host without workspaces, beside h100 in the first batch
    pin(team, images["v4"])
    extra = (*NO_GATES, "-e", "gpuprov_rollout_batches=2", "-e", "rollout_min_healthy_time=20")
    try:
        returncode, said = lose_mid_rollout(team, testbed, "h100", extra)
        assert returncode != 0
        assert "rollout stopped: 1 host(s) failed or became unreachable (h100), more than " in (
            said
        ), said[-4000:]
        assert running_on(testbed, images["v3"], ("oldgpu",)) == {"gpuprov-carol-jupyter": True}
        assert not has_state(testbed, "oldgpu")
    finally:
        if not testbed._running("h100"):
            testbed.start_host("h100")
    assert has_state(testbed, "h100"), "the lost host keeps its record"
    team.play("playbooks/upgrade.yml", extra=NO_GATES)
    team.hosts.remove("notoolkit")
    assert all(running_on(testbed, images["v4"]).values())
    assert not has_state(testbed, "h100")
    resumed = history(testbed, "h100")[-1]
    assert (resumed["outcome"], resumed["image"]) == ("rolled_out", images["v4"])
    assert resumed["resumed_from"] not in ("", resumed["run"])
    assert resumed["previous"] == {
        "gpuprov-alice-jupyter": images["v3"],
        "gpuprov-alice-ssh": images["v3"],
    }
    assert home_checksums(testbed) == sums


def test_a_killed_controller_then_the_same_command_converges_with_the_right_history(
    team, testbed, images
):
    pin(team, images["v3"])
    run = team.start(
        "playbooks/upgrade.yml", extra=(*NO_GATES, "-e", "rollout_min_healthy_time=20")
    )
    try:
        wait_for(lambda: has_state(testbed, "h100"), 300, "h100's rollout record")
    finally:
        run.kill()
    assert has_state(testbed, "h100"), "the killed run left h100 mid-rollout"
    team.play("playbooks/upgrade.yml", extra=NO_GATES)
    assert all(running_on(testbed, images["v3"]).values())
    for host in HOSTS:
        assert not has_state(testbed, host)
        names = on_host(testbed, host, "docker ps -a --filter label=org.gpuprov.user "
                        "--format '{{.Names}}'").split()  # fmt: skip
        assert len(names) == len(set(names)), f"duplicate containers on {host}: {names}"
    last = history(testbed, "h100")[-1]
    assert last["outcome"] == "rolled_out"
    assert last["resumed_from"] not in ("", last["run"]), "the second run took over the first's"
    assert last["previous"] == {
        "gpuprov-alice-jupyter": images["v4"],
        "gpuprov-alice-ssh": images["v4"],
    }


def test_rollback_goes_to_the_previous_image_then_to_an_older_one_from_the_history(
    team, testbed, images
):
    sums = home_checksums(testbed)
    preview = team.play("playbooks/rollback.yml", extra=(*NO_GATES, "--check"))
    assert {h: c["changed"] for h, c in recap(preview).items()} == {"h100": 1, "oldgpu": 1}
    team.play("playbooks/rollback.yml", extra=NO_GATES)
    assert all(running_on(testbed, images["v4"]).values())
    older = ("-e", f"rollout_rollback_to={images['v3']}")
    team.play("playbooks/rollback.yml", extra=(*NO_GATES, *older))
    assert all(running_on(testbed, images["v3"]).values())
    unknown = team.play(
        "playbooks/rollback.yml", check=False, extra=(*NO_GATES, "-e", "rollout_rollback_to=v0")
    )
    said = " ".join(unknown.stdout.split())
    assert "pre-flight refused the rollout" in said
    assert "rollback_to: v0 is not in h100's history; the images on record are: " in said
    assert all(running_on(testbed, images["v3"]).values())
    assert home_checksums(testbed) == sums
    assert recap(team.play("playbooks/upgrade.yml", extra=NO_GATES))["h100"]["changed"] == 0


def test_the_rollouts_probe_key_logs_in_to_run_one_echo_and_nothing_else(team, testbed):
    """The health gate's login: gpuprov's key (root's, on the host) gets the forced reply
    whatever it asks for, and the line lives in gpuprov's file, not in the user's home."""
    keys = on_host(
        testbed, "h100", "docker exec gpuprov-alice-ssh cat /gpuprov/ssh/authorized_keys"
    )
    assert 'restrict,command="echo gpuprov-probe-ok" ssh-ed25519 ' in keys
    assert on_host(testbed, "h100", "stat -c %a /etc/gpuprov/probe_ed25519") == "600"
    login = on_host(
        testbed, "h100",
        f"ssh -i /etc/gpuprov/probe_ed25519 -p {port(2001, 'ssh')} -o BatchMode=yes "
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
        "alice@127.0.0.1 'id -u; cat /etc/shadow'",
    )  # fmt: skip
    assert login == "gpuprov-probe-ok"
    home = on_host(testbed, "h100", "grep -rl gpuprov-probe /srv/gpuprov/alice/home", check=False)
    assert home == ""


def jupyter_api(
    testbed: TestBed, method: str, path: str, user: str = "alice", token: str = ALICE_TOKEN
) -> str:
    """A user's Jupyter API (alice's by default), as their browser would call it."""
    host, uid = {"alice": ("h100", 2001), "carol": ("oldgpu", 2003)}[user]
    url = f"http://127.0.0.1:{port(uid, 'jupyter')}/api/{path}"
    argv = ["curl", "-s", "--max-time", "10", "-X", method,
            "-H", f"Authorization: token {token}", url]  # fmt: skip
    return subprocess.run(
        testbed.in_host_netns(host, argv), capture_output=True, text=True, check=True
    ).stdout


def open_session(testbed: TestBed, team: Team, log: Path) -> subprocess.Popen:
    """An interactive SSH session in alice's workspace (a terminal, a job in it)."""
    argv = [
        "ssh", "-tt", "-i", str(team.keys["alice"][0]), "-p", str(port(2001, "ssh")),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "alice@127.0.0.1",
        "sleep 600",
    ]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            testbed.in_host_netns("h100", argv), stdin=subprocess.PIPE, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@dataclass
class Hook:
    url: str
    bodies: list[dict]


@contextlib.contextmanager
def webhook() -> Iterator[Hook]:
    """A webhook on the controller (where Ansible POSTs from), holding a secret in its path."""
    heard = Hook("", [])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            heard.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    heard.url = f"http://127.0.0.1:{server.server_port}/hooks/T0-secret-{os.getpid()}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield heard
    finally:
        server.shutdown()


def kernel_pid(testbed: TestBed, host: str, container: str, kernel: str) -> int | None:
    """The host pid of a Jupyter kernel, from its connection file's name (kernel-ID.json)."""
    top = on_host(testbed, host, f"docker top {container} -eo pid,args")
    pids = [line.split()[0] for line in top.splitlines() if f"kernel-{kernel}.json" in line]
    return int(pids[0]) if pids else None


def test_work_in_progress_is_skipped_then_waited_for_with_a_notice(team, testbed, images, tmp_path):
    """A kernel used a moment ago and an open SSH session: with skip, alice's workspaces keep
    their image and are reported pending, and so is carol's, whose new kernel holds a GPU. With
    wait, alice reads the notice in her session, ends her work, and the rollout moves her
    workspaces then, and carol's, whose kernel has ended."""
    kernel = json.loads(jupyter_api(testbed, "POST", "kernels"))["id"]
    carol_token = on_host(testbed, "oldgpu", "cat /etc/gpuprov/secrets/carol/jupyter-token")
    carol_kernel = json.loads(jupyter_api(testbed, "POST", "kernels", "carol", carol_token))["id"]
    session = open_session(testbed, team, tmp_path / "session.log")
    try:
        top = "docker top gpuprov-alice-ssh -eo pid,args"
        wait_for(lambda: "sshd: alice@pts" in on_host(testbed, "h100", top), 30, "her session")
        carol = ("oldgpu", "gpuprov-carol-jupyter", carol_kernel)
        wait_for(lambda: kernel_pid(testbed, *carol), 30, "carol's kernel")
        gpu_pid = kernel_pid(testbed, *carol)
        # The bed runs no CUDA: its nvidia-smi reports the kernel as a GPU compute process.
        testbed.reconfigure_host("oldgpu", compute_pids=(gpu_pid,))
        before = container_ids(testbed)
        pin(team, images["v4"])
        with webhook() as heard:
            skipped = team.play(
                "playbooks/upgrade.yml",
                extra=(*NO_GATES, "-e", "gpuprov_rollout_busy=skip",
                       "-e", f"gpuprov_rollout_webhook={heard.url}"),
            )  # fmt: skip
        # The team's channel hears it (the notice reaches SSH sessions only), the log does not.
        gpu_reason = f"GPU compute process pid {gpu_pid} (ffmpeg, 538 MiB)"
        assert [body["host"] for body in heard.bodies] == ["h100", "oldgpu"]
        assert {w["name"]: w["outcome"] for w in heard.bodies[0]["workspaces"]} == {
            "gpuprov-alice-jupyter": "pending",
            "gpuprov-alice-ssh": "pending",
        }
        # gpuprov_rollout_idle_minutes is the team's: the kernel, just started, counts too.
        (carol_busy,) = heard.bodies[1]["workspaces"]
        assert (carol_busy["name"], carol_busy["outcome"]) == ("gpuprov-carol-jupyter", "pending")
        assert carol_busy["reasons"][0] == gpu_reason
        assert re.fullmatch(r"python3 kernel active \d+ min ago", carol_busy["reasons"][1])
        assert heard.url not in skipped.stdout
        said = " ".join(skipped.stdout.split())
        # bob, idle, moves where the story's earlier tests did not remove him (a -k run).
        assert re.search(
            r"h100: moved (nothing|gpuprov-bob-ssh); PENDING, still on their image: ", said
        ), said[-3000:]
        assert re.search(r"gpuprov-alice-jupyter \(python3 kernel active \d+ min ago\)", said)
        assert "gpuprov-alice-ssh (SSH session open (pts/" in said
        assert (
            f"oldgpu: moved nothing; PENDING, still on their image: gpuprov-carol-jupyter "
            f"({gpu_reason}, python3 kernel active " in said
        ), said[-3000:]
        after = container_ids(testbed)
        for name in ("gpuprov-alice-jupyter", "gpuprov-alice-ssh", "gpuprov-carol-jupyter"):
            assert after[name] == before[name], name
        assert not running_on(testbed, images["v4"], ("oldgpu",))["gpuprov-carol-jupyter"]
        assert session.poll() is None, "the session survived the rollout"

        # Carol's kernel ends, and with it its GPU memory.
        jupyter_api(testbed, "DELETE", f"kernels/{carol_kernel}", "carol", carol_token)
        testbed.reconfigure_host("oldgpu", compute_pids=())
        waiting = team.start(
            "playbooks/upgrade.yml",
            extra=(*NO_GATES, "-e", "gpuprov_rollout_busy=wait", "-e", "gpuprov_rollout_wait=300"),
        )
        try:
            log = tmp_path / "session.log"
            wait_for(
                lambda: "gpuprov: this workspace" in log.read_text(errors="replace"), 300, "it"
            )
            notice = " ".join(log.read_text(errors="replace").split())
            assert f"will restart to move to the team image {images['v4']} once it is idle" in (
                notice
            )
            session.kill()
            jupyter_api(testbed, "DELETE", f"kernels/{kernel}")
            output = waiting.output(timeout=600)
        finally:
            waiting.kill()
        assert waiting.proc.returncode == 0, output[-3000:]
        assert "h100: moved gpuprov-alice-jupyter, gpuprov-alice-ssh" in " ".join(output.split())
        assert "oldgpu: moved gpuprov-carol-jupyter" in " ".join(output.split())
        assert all(running_on(testbed, images["v4"]).values())
    finally:
        session.kill()
        testbed.reconfigure_host("oldgpu", compute_pids=())
        # Gone already when the test got that far (the kernel, or its container).
        with contextlib.suppress(subprocess.CalledProcessError):
            jupyter_api(testbed, "DELETE", f"kernels/{carol_kernel}", "carol", carol_token)
        pin(team, images["v3"])
    team.play("playbooks/upgrade.yml", extra=NO_GATES)


def test_a_manual_promotion_stops_after_the_canary_until_the_same_command_runs_again(
    team, testbed, images
):
    pin(team, images["v4"])
    before = container_ids(testbed)
    manual = (*NO_GATES, "-e", "gpuprov_rollout_promote=manual")
    first = team.play("playbooks/upgrade.yml", extra=manual)
    said = " ".join(first.stdout.split())
    assert f"canary h100 runs {images['v4']} and passed the health gate; no other host moved" in (
        said
    ), said[-3000:]
    assert all(running_on(testbed, images["v4"], ("h100",)).values())
    assert running_on(testbed, images["v4"], ("oldgpu",)) == {"gpuprov-carol-jupyter": False}
    canary = container_ids(testbed)
    assert canary["gpuprov-carol-jupyter"] == before["gpuprov-carol-jupyter"]

    promoted = team.play("playbooks/upgrade.yml", extra=manual)
    assert "passed the health gate; no other host moved" not in promoted.stdout
    after = container_ids(testbed)
    assert after["gpuprov-alice-jupyter"] == canary["gpuprov-alice-jupyter"], "moved twice"
    assert all(running_on(testbed, images["v4"]).values())
    assert [entry["image"] for entry in history(testbed, "oldgpu")][-1] == images["v4"]


def test_a_failed_batch_sends_the_hosts_already_moved_back_under_the_rollback_action(
    team, testbed, images
):
    """The fleet runs v4; the pin goes to v3 in batches of 1 then 2, with
    gpuprov_rollout_failure_action rollback. h100, the canary, moves; oldgpu is lost while
    it moves in the second batch, beside notoolkit: h100 goes back to v4, oldgpu keeps
    its record, and the next run with the pin on v3 converges the whole fleet."""
    try:  # the test before leaves the fleet on v4; run alone, it gets there first
        on_v4 = all(running_on(testbed, images["v4"]).values())
    except CommandError:
        on_v4 = False
    if not on_v4:
        pin(team, images["v4"])
        team.play("playbooks/upgrade.yml", extra=NO_GATES)
    sums = home_checksums(testbed)
    team.hosts.append("notoolkit")
    pin(team, images["v3"])
    extra = (
        *NO_GATES, "-e", "gpuprov_rollout_batches=1,2", "-e", "rollout_min_healthy_time=20",
        "-e", "gpuprov_rollout_failure_action=rollback",
    )  # fmt: skip
    try:
        returncode, said = lose_mid_rollout(team, testbed, "oldgpu", extra)
        assert returncode != 0
        assert "rollout stopped: 1 host(s) failed or became unreachable (oldgpu), more than " in (
            said
        ), said[-4000:]
        assert "the hosts this run moved go back to the images their records name (h100)" in said
        assert all(running_on(testbed, images["v4"], ("h100",)).values())
        back = history(testbed, "h100")[-2:]
        assert [(entry["outcome"], entry["image"]) for entry in back] == [
            ("rolled_out", images["v3"]),
            ("rolled_out", images["v4"]),
        ], back
        assert back[1]["previous"] == dict.fromkeys(back[1]["previous"], images["v3"])
        assert not has_state(testbed, "h100")
    finally:
        if not testbed._running("oldgpu"):
            testbed.start_host("oldgpu")
        team.hosts.remove("notoolkit")
    assert has_state(testbed, "oldgpu"), "the lost host keeps its record"
    team.play("playbooks/upgrade.yml", extra=NO_GATES)
    assert all(running_on(testbed, images["v3"]).values())
    assert home_checksums(testbed) == sums


# ---------------------------------------------------------------- onboarding


def test_onboarding_refuses_to_run_without_a_limit(team, testbed):
    before = container_ids(testbed)
    proc = team.play("playbooks/onboard.yml", check=False)
    assert proc.returncode != 0
    assert "playbooks/onboard.yml needs the new host(s) with --limit" in " ".join(
        proc.stdout.split()
    )
    assert "TASK [docker_engine" not in proc.stdout
    assert container_ids(testbed) == before


def test_onboarding_a_new_workstation_touches_no_other_host(team, testbed):
    """notoolkit joins the inventory with erin; one command brings it up, alone."""
    before = container_ids(testbed)
    team.hosts.append("notoolkit")
    team.users["erin"] = {
        "name": "erin", "uid": 2020, "host": "notoolkit",
        "ssh_keys": [team.keys["dan"][1]], "workspaces": [{"kind": "ssh"}],
    }  # fmt: skip
    # The bed has no GPU and notoolkit no toolkit: verification reports, it does not stop.
    onboard = ("-l", "notoolkit", "-e", "host_verify_fail_host=false", *ROLLOUT[2:])
    onboard += ("-e", "team_image_audit=false")
    try:
        proc = team.play("playbooks/onboard.yml", extra=onboard)
        assert set(recap(proc)) == {"notoolkit"}
        assert (
            "ok: [notoolkit] => " in proc.stdout
            and "gpuprov workspaces of erin on notoolkit" in (proc.stdout)
        )
        login = workspace_ssh(testbed, team, "notoolkit", "erin", "dan", "id -u")
        assert login.stdout.strip() == "2020", login.stderr
        assert container_ids(testbed) == before
        assert recap(team.play("playbooks/onboard.yml", extra=onboard))["notoolkit"]["changed"] == 0
    finally:
        on_host(testbed, "notoolkit", "docker rm -f gpuprov-erin-ssh", check=False)
        team.hosts.remove("notoolkit")
        del team.users["erin"]


def test_no_token_in_the_complete_verbose_output(team, testbed, images):
    carol_token = on_host(testbed, "oldgpu", "cat /etc/gpuprov/secrets/carol/jupyter-token")
    assert len(team.outputs) >= 6
    for output in team.outputs:
        assert ALICE_TOKEN not in output
        assert carol_token not in output
        assert CAROL_PASSWORD not in output
        assert images["password_hash"] not in output
