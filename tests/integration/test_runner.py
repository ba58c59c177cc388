"""gpuprov as AWX runs it: a job of ansible-runner, and a playbook by FQCN, both from
the collection built from the clone and installed on its own, against the test bed.

The job's private data dir is laid out as AWX lays it: an inventory script that
prints JSON (vaulted values as ``__ansible_vault``, as AWX's generated inventory
holds them), ``env/extravars``, the vault password answered to Ansible's prompt
through ``env/passwords`` with ``--ask-vault-pass`` in ``env/cmdline``, and the
collection in a collections path of the job's own. The vaulted value is h100's
become password: the job logs in there as an operator whose sudo asks for it.
Neither run can use the clone: the cwd is outside it, no ANSIBLE_* setting points
at it, and the gpuprov Python package cannot be imported by the controller.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import collection
from test_verify_playbook import CHECK_ORDER, GPU_VARS, PROMISES
from testbed import TestBed

BIN = Path(sys.executable).parent
HOSTS = ("h100", "oldgpu", "notoolkit")
IDENT = "verify-1"
# The job logs in to h100 as this account; its sudo asks for the vaulted password.
OPERATOR = "gpuprov-op"
# node_exporter's textfile directory on the bed hosts, for this module's runs only.
METRICS_DIR = "/var/lib/gpuprov-test-runner/textfile"
# The prompt AWX answers for a Vault credential (and the flag it adds for one).
VAULT_PROMPT = r"Vault password:\s*?$"
NAMED_TASKS = (
    "Gather the NVIDIA driver, GPU, kernel and toolkit facts",
    "Evaluate the host gates",
    "Write the host's JSON report on the controller",
    "Write the gates' statuses to gpuprov.prom on the host",
)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    """The collection built once for this module's runs."""
    return collection.build(tmp_path_factory.mktemp("build"), collection.env_outside_the_clone(BIN))


@pytest.fixture(scope="module")
def secret_values() -> dict[str, str]:
    return {
        "vault": "vault-" + secrets.token_urlsafe(18),
        "become": "become-" + secrets.token_urlsafe(18),
    }


@pytest.fixture(scope="module")
def operator(testbed: TestBed, secret_values: dict[str, str]):
    """On h100: an account that logs in with the bed's key and whose sudo asks its password."""
    testbed.ssh(
        "h100",
        f"id {OPERATOR} >/dev/null 2>&1 || useradd -m -s /bin/sh {OPERATOR}; "
        f"mkdir -p ~{OPERATOR}/.ssh && cp /root/.ssh/authorized_keys ~{OPERATOR}/.ssh/ && "
        f"chown -R {OPERATOR} ~{OPERATOR}/.ssh && "
        f"echo '{OPERATOR} ALL=(ALL:ALL) ALL' > /etc/sudoers.d/{OPERATOR} && "
        f"rm -rf /run/sudo/ts/{OPERATOR}",
    )
    try:
        # chpasswd reads NAME:PASSWORD on stdin: the password is in no command line.
        done = subprocess.run(
            [*testbed.ssh_argv("h100"), "chpasswd"],
            input=f"{OPERATOR}:{secret_values['become']}\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        asks = testbed.ssh("h100", f"su {OPERATOR} -c 'sudo -n true'", check=False)
        assert asks.returncode != 0 and "a password is required" in asks.stderr, asks
        yield OPERATOR
    finally:
        testbed.ssh(
            "h100",
            f"rm -f /etc/sudoers.d/{OPERATOR}; rm -rf /run/sudo/ts/{OPERATOR}; "
            f"userdel -r {OPERATOR} >/dev/null 2>&1 || true",
        )


@pytest.fixture(scope="module")
def clean_metrics(testbed: TestBed):
    for host in HOSTS:
        testbed.ssh(host, f"rm -rf {METRICS_DIR}")
    yield METRICS_DIR
    for host in HOSTS:
        testbed.ssh(host, f"rm -rf {METRICS_DIR}")


def vaulted(value: str, vault_password: str, folder: Path) -> str:
    """The ciphertext of ``value`` (`$ANSIBLE_VAULT;1.1;AES256` and its lines)."""
    password_file = folder / "vault-password"
    password_file.write_text(vault_password + "\n")
    try:
        done = subprocess.run(
            [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file),
             "--output", "-"],
            input=value,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )  # fmt: skip
    finally:
        password_file.unlink()
    assert done.stdout.startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    return done.stdout


def image_pin(shell_image_ref: str) -> dict:
    reference, digest = shell_image_ref.split("@")
    return {
        "reference": reference,
        "digest": digest,
        "source": "pull",
        "flavour": "cuda",
        "promises": PROMISES,
    }


def inventory_script(data: dict) -> str:
    """An executable inventory that prints ``data``, as AWX writes a job's inventory/hosts."""
    return (
        f"#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint({json.dumps(json.dumps(data))})\n"
    )


@pytest.fixture(scope="module")
def job(
    testbed: TestBed,
    tarball: Path,
    operator: str,
    clean_metrics: str,
    shell_image_ref: str,
    secret_values: dict[str, str],
    tmp_path_factory,
) -> dict:
    """`ansible-runner run` of gpuprov.gpu.verify on the three hosts, from a private data dir."""
    pdd = tmp_path_factory.mktemp("runner")
    env = collection.env_outside_the_clone(BIN)
    installed = collection.install(tarball, pdd / "collections", env)
    (pdd / "project").mkdir()  # the job's cwd: a project that holds nothing of gpuprov

    hostvars = {h: {**testbed.ansible_host_vars(h), **GPU_VARS[h]} for h in HOSTS}
    hostvars["h100"].update(
        ansible_user=operator,
        ansible_become=True,
        ansible_become_password={
            "__ansible_vault": vaulted(secret_values["become"], secret_values["vault"], pdd)
        },
    )
    inventory = {
        "all": {"hosts": list(HOSTS), "vars": {"gpuprov_image": image_pin(shell_image_ref)}},
        "_meta": {"hostvars": hostvars},
    }
    (pdd / "inventory").mkdir()
    script = pdd / "inventory" / "hosts"
    script.write_text(inventory_script(inventory))
    script.chmod(0o700)

    (pdd / "env").mkdir()
    write_json(
        pdd / "env/extravars", {"host_verify_workload": False, "gpuprov_metrics_dir": clean_metrics}
    )
    write_json(pdd / "env/passwords", {VAULT_PROMPT: secret_values["vault"]})
    (pdd / "env/cmdline").write_text("--ask-vault-pass")
    write_json(
        pdd / "env/envvars",
        {
            "ANSIBLE_COLLECTIONS_PATH": str(pdd / "collections"),
            "PYTHONPATH": str(collection.without_gpuprov(pdd / "site")),
        },
    )
    write_json(pdd / "env/settings", {"job_timeout": 540, "idle_timeout": 300})

    done = subprocess.run(
        [str(BIN / "ansible-runner"), "run", str(pdd), "-p", "gpuprov.gpu.verify",
         "--ident", IDENT],
        cwd=tmp_path_factory.mktemp("elsewhere"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    artifacts = pdd / "artifacts" / IDENT
    return {
        "pdd": pdd,
        "installed": installed,
        "proc": done,
        "artifacts": artifacts,
        "events": events_of(artifacts),
    }


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data))
    path.chmod(0o600)


def events_of(artifacts: Path) -> list[dict]:
    """The job's events in order, as ansible-runner's Runner.events gives them."""
    found = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    return sorted(found, key=lambda event: event["counter"])


def host_events(events: list[dict], kind: str, task: str) -> set[str]:
    return {
        e["event_data"]["host"]
        for e in events
        if e["event"] == kind and e["event_data"].get("task") == task
    }


def report_of(folder: Path, host: str) -> dict:
    return json.loads((folder / f"{host}.json").read_text())


def test_the_job_ends_as_verify_does_and_its_events_say_so(job) -> None:
    artifacts = job["artifacts"]
    detail = job["proc"].stdout[-3000:] + job["proc"].stderr[-2000:]
    # Every host has a failed gate (no nvidia runtime in Docker, an old driver, no
    # toolkit): verify fails them all, and the job fails with Ansible's rc.
    assert (artifacts / "status").read_text() == "failed", detail
    assert (artifacts / "rc").read_text().strip() == "2", detail
    events = job["events"]
    # Ansible asked for the vault password first; the runner answered from env/passwords.
    assert [e["event"] for e in events[:2]] == ["verbose", "playbook_on_start"]
    assert events[0]["stdout"].strip() == "Vault password:"
    stats = [e for e in events if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1 and events[-1] is stats[0]
    data = stats[0]["event_data"]
    assert data["failures"] == dict.fromkeys(HOSTS, 1), data
    assert data["dark"] == {}
    assert set(data["ok"]) == set(HOSTS)
    for task in NAMED_TASKS:
        assert host_events(events, "runner_on_ok", task) == set(HOSTS), task
    failing = "Fail the host with the reasons of its failed checks"
    assert host_events(events, "runner_on_failed", failing) == set(HOSTS)
    reason = next(
        e["event_data"]["res"]["msg"]
        for e in events
        if e["event"] == "runner_on_failed" and e["event_data"]["host"] == "oldgpu"
    )
    assert "driver 535.104.05 < " in reason
    # The stdout artifact is the job output AWX shows: the events' text, the recap last.
    stdout = (artifacts / "stdout").read_text().replace("\r\n", "\n").rstrip()
    recap = stats[0]["stdout"].replace("\r\n", "\n").strip()
    assert recap.startswith("PLAY RECAP") and stdout.endswith(recap), stdout[-1000:]


def test_the_job_ran_the_installed_collection_and_nothing_of_the_clone(job) -> None:
    installed = str(job["installed"])
    events = job["events"]
    paths = {e["event_data"]["task_path"] for e in events if e["event"] == "playbook_on_task_start"}
    assert paths, "no task started"
    outside = sorted(p for p in paths if not p.startswith(installed + "/"))
    assert not outside, f"tasks from outside {installed}: {outside}"
    command = json.loads((job["artifacts"] / "command").read_text())
    assert "--ask-vault-pass" in command["command"], command["command"]
    assert command["cwd"] == str(job["pdd"] / "project")
    assert "ANSIBLE_CONFIG" not in command["env"]
    assert command["env"]["AWX_ISOLATED_DATA_DIR"] == str(job["artifacts"])


def test_the_reports_are_in_the_job_artifacts(job) -> None:
    """A relative gpuprov_report_dir (the default) lies in the job's artifacts folder."""
    reports = job["artifacts"] / "reports" / "verify"
    assert sorted(p.name for p in reports.iterdir()) == sorted(f"{h}.json" for h in HOSTS)
    for host in HOSTS:
        report = report_of(reports, host)
        assert report["host"] == host
        assert [c["name"] for c in report["checks"]] == CHECK_ORDER
        workload = {c["name"]: c for c in report["checks"]}["cuda workload"]
        # The job's extravars reached the play.
        assert workload == {
            "name": "cuda workload",
            "status": "warn",
            "reason": "not run: disabled by host_verify_workload: false",
        }
    h100 = {c["name"]: c for c in report_of(reports, "h100")["checks"]}
    # Gathered through sudo as the operator: the same facts root reads.
    assert h100["nvidia driver"]["reason"] == "driver 590.48.01, supports CUDA 13.1"
    assert h100["container toolkit"]["reason"] == "toolkit 1.19.1 >= 1.19.1"
    assert not (job["installed"] / "reports").exists(), "nothing written into the collection"


def test_the_vaulted_become_password_was_used_and_never_shown(job, testbed, secret_values):
    # sudo keeps a timestamp for a user only once that user typed the right password.
    stamp = testbed.ssh("h100", f"stat -c %U /run/sudo/ts/{OPERATOR}", check=False)
    assert stamp.returncode == 0 and stamp.stdout.strip() == "root", stamp
    owner = testbed.ssh("h100", f"stat -c %U {METRICS_DIR}/gpuprov.prom").stdout.strip()
    assert owner == "root", "h100's tasks ran as root through the operator's sudo"
    login = [
        e
        for e in job["events"]
        if e["event"] == "runner_on_ok" and e["event_data"]["host"] == "h100"
    ]
    assert login, "no task succeeded on h100"
    leaks = []
    for path in sorted(job["artifacts"].rglob("*")):
        if not path.is_file():
            continue
        text = path.read_bytes().decode(errors="replace")
        leaks += [f"{name} in {path}" for name, value in secret_values.items() if value in text]
    for name, value in secret_values.items():
        if value in job["proc"].stdout + job["proc"].stderr:
            leaks.append(f"{name} in ansible-runner's output")
    assert not leaks, leaks


def parsed(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_gpuprov_prom_on_each_host_says_what_the_report_says(job, testbed) -> None:
    reports = job["artifacts"] / "reports" / "verify"
    for host in HOSTS:
        listing = testbed.ssh(host, f"ls -A {METRICS_DIR}").stdout.split()
        assert listing == ["gpuprov.prom"], f"{host}: {listing} (a temporary file left?)"
        text = testbed.ssh(host, f"cat {METRICS_DIR}/gpuprov.prom").stdout
        assert text.startswith("# gpuprov section: verify\n"), text[:200]
        found = parsed(text)
        report = report_of(reports, host)
        statuses = found["gpuprov_verify_check_status"]
        assert len(statuses) == 4 * len(CHECK_ORDER)
        current = {labels["check"]: labels["status"] for labels, value in statuses if value == 1}
        assert current == {c["name"]: c["status"] for c in report["checks"]}, host
        assert found["gpuprov_verify_failed_checks"] == [({}, float(len(report["failed"])))]
    h100 = parsed(testbed.ssh("h100", f"cat {METRICS_DIR}/gpuprov.prom").stdout)
    status = {
        (labels["check"], labels["status"]): value
        for labels, value in h100["gpuprov_verify_check_status"]
    }
    assert status[("nvidia driver", "ok")] == 1 and status[("nvidia driver", "fail")] == 0
    assert status[("docker gpu runtime", "fail")] == 1
    assert status[("cuda workload", "warn")] == 1


TASK_PATH = re.compile(r"^task path: (\S+):\d+$", re.MULTILINE)


def test_a_playbook_by_fqcn_from_the_installed_tarball(
    testbed: TestBed, tarball: Path, shell_image_ref: str, tmp_path: Path
) -> None:
    """ansible-playbook gpuprov.gpu.verify with only ANSIBLE_COLLECTIONS_PATH set, from a
    folder outside the clone: no ansible.cfg, the tasks from the installed collection."""
    env = collection.env_outside_the_clone(BIN)
    installed = collection.install(tarball, tmp_path / "collections", env)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp_path / "collections")
    env["PYTHONPATH"] = str(collection.without_gpuprov(tmp_path / "site"))
    (tmp_path / "inventory").mkdir()
    inventory = testbed.write_inventory(
        tmp_path / "inventory" / "hosts.yml", extra_host_vars={"h100": GPU_VARS["h100"]}
    )
    extra = {
        "gpuprov_image": image_pin(shell_image_ref),
        "host_verify_workload": False,
        "gpuprov_report_dir": str(tmp_path / "reports"),
    }
    (tmp_path / "cwd").mkdir()
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-vv", "-i", str(inventory), "-l", "h100",
         "-e", json.dumps(extra), "gpuprov.gpu.verify"],
        cwd=tmp_path / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 2, out[-3000:] + done.stderr[-2000:]
    assert "No config file found; using defaults" in out
    assert "running playbook inside collection gpuprov.gpu" in out
    paths = TASK_PATH.findall(out)
    # -vv names the file of every task it starts.
    assert paths and len(paths) == out.count("\nTASK ["), out[-3000:]
    outside = sorted({p for p in paths if not p.startswith(f"{installed}/")})
    assert not outside, f"tasks from outside {installed}: {outside}"
    report = report_of(tmp_path / "reports" / "verify", "h100")
    assert [c["name"] for c in report["checks"]] == CHECK_ORDER
    assert re.search(r"h100\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=1", out), out[-2000:]
    # Ansible's own account of where it looked (the venv lies in the clone; nothing else).
    assert "config file = None" in out
    assert f"ansible collection location = {tmp_path / 'collections'}\n" in out
