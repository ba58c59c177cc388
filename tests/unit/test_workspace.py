"""The workspace container spec, life-cycle decisions and connection notes (pure core)."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from gpuprov.core import workspace
from gpuprov.core.plan import WorkspacePlan

ALICE = WorkspacePlan(
    user="alice",
    uid=2001,
    gid=2001,
    host="gpu1",
    kind="jupyter",
    port=20002,
    bind_address="127.0.0.1",
    gpus=("0",),
    volumes=({"source": "/data/sets", "target": "/datasets", "read_only": True},),
    limits={"memory": "4g", "pids": 512, "cpus": 2, "shm_size": "1g"},
    ssh_keys=(),
)
SSH = replace(ALICE, kind="ssh", port=20003, ssh_keys=("ssh-ed25519 AAAA alice",), gpus=())


def spec(plan: WorkspacePlan = ALICE, **kwargs) -> dict:
    return workspace.container_spec(
        plan,
        "reg/team@sha256:" + "a" * 64,
        "/srv/gpuprov",
        "/etc/gpuprov/secrets",
        "8g",
        **kwargs,
    )


def test_spec_runs_as_the_user_with_no_privileges():
    got = spec()
    assert got["user"] == "2001:2001"
    assert got["cap_drop"] == ["ALL"]
    assert got["security_opts"] == ["no-new-privileges"]
    assert got["restart_policy"] == "unless-stopped"
    assert "privileged" not in got and "network_mode" not in got
    assert not any("docker.sock" in v for v in got["volumes"])


def test_spec_publishes_on_the_bind_address_only():
    assert spec()["published_ports"] == ["127.0.0.1:20002:8888"]
    assert spec(SSH)["published_ports"] == ["127.0.0.1:20003:2222"]


def test_spec_limits_gpus_and_volumes():
    got = spec()
    assert (got["memory"], got["pids_limit"], got["cpus"], got["shm_size"]) == ("4g", 512, 2, "1g")
    assert got["device_requests"] == [
        {"driver": "nvidia", "count": 0, "device_ids": ["0"], "capabilities": [["gpu"]]}
    ]
    assert "/data/sets:/datasets:ro" in got["volumes"]
    assert "/srv/gpuprov/alice/home:/home/alice" in got["volumes"]
    assert spec(SSH)["device_requests"] == []


def test_spec_default_shm_and_no_limits():
    bare = replace(ALICE, limits={}, gpus=())
    got = spec(bare)
    assert got["shm_size"] == "8g"
    assert got["memory"] is None and got["pids_limit"] is None


def test_the_root_filesystem_is_read_only_with_a_bounded_tmp():
    got = spec()
    assert got["read_only"] is True
    assert got["tmpfs"] == ["/tmp:rw,nosuid,nodev,size=1g"]
    bigger = spec(replace(ALICE, limits={"tmp_size": "8g"}))
    assert bigger["tmpfs"] == ["/tmp:rw,nosuid,nodev,size=8g"]


def test_logs_rotate_by_default_and_the_team_may_choose_the_sizes():
    got = spec()
    assert got["log_driver"] == "json-file"
    assert got["log_options"] == {"max-size": "20m", "max-file": "5"}
    chosen = spec(log_options={"max-size": "100m", "max-file": 3})
    assert chosen["log_options"] == {"max-size": "100m", "max-file": "3"}
    assert chosen["labels"]["org.gpuprov.spec"] != got["labels"]["org.gpuprov.spec"]


def test_jupyter_credentials_arrive_as_read_only_files_never_in_env_values():
    got = spec(replace(ALICE, password_hash_given=True))
    assert (
        "/etc/gpuprov/secrets/alice/jupyter-token:/run/secrets/jupyter-token:ro" in got["volumes"]
    )
    assert (
        "/etc/gpuprov/secrets/alice/jupyter-password-hash:/run/secrets/jupyter-password-hash:ro"
        in got["volumes"]
    )
    assert got["env"]["JUPYTER_TOKEN_FILE"] == "/run/secrets/jupyter-token"
    assert "JUPYTER_PASSWORD_HASH_FILE" not in spec()["env"]


def test_ssh_keeps_host_keys_in_the_users_data():
    assert "/srv/gpuprov/alice/ssh:/gpuprov/ssh" in spec(SSH)["volumes"]


def test_labels_record_user_kind_image_and_spec_hash():
    labels = spec()["labels"]
    assert labels["org.gpuprov.user"] == "alice"
    assert labels["org.gpuprov.kind"] == "jupyter"
    assert labels["org.gpuprov.image"].endswith("a" * 64)
    changed = spec(replace(ALICE, limits={**ALICE.limits, "pids": 1024}))["labels"]
    assert changed["org.gpuprov.spec"] != labels["org.gpuprov.spec"]
    assert spec()["labels"] == labels


def container(name, user=None, kind="ssh", state="running", port=None):
    labels = {"org.gpuprov.user": user, "org.gpuprov.kind": kind} if user else {}
    ports = [{"IP": "127.0.0.1", "PrivatePort": 2222, "PublicPort": port}] if port else []
    return {"Names": [f"/{name}"], "Labels": labels, "State": state, "Ports": ports}


def test_stale_containers_are_gpuprovs_only_and_say_where_data_stays():
    plan = [asdict(ALICE)]
    found = workspace.stale_containers(
        plan,
        [
            container("gpuprov-alice-jupyter", "alice", "jupyter"),
            container("gpuprov-alice-ssh", "alice"),
            container("gpuprov-bob-ssh", "bob"),
            container("someone-elses"),
        ],
        "/srv/gpuprov/",
    )
    assert found == [
        {"name": "gpuprov-alice-ssh", "user": "alice", "kind": "ssh", "data": "/srv/gpuprov/alice"},
        {"name": "gpuprov-bob-ssh", "user": "bob", "kind": "ssh", "data": "/srv/gpuprov/bob"},
    ]


def _on(image: str, user: str | None = "alice") -> dict:
    labeled = container(f"gpuprov-{user}-ssh", user)
    labeled["Labels"]["org.gpuprov.image"] = image
    return labeled


@pytest.mark.parametrize(
    ("containers", "expected"),
    [
        ([], ""),
        ([container("someone-elses")], ""),
        ([_on("reg/team@sha256:a"), _on("reg/team@sha256:a", "bob")], "reg/team@sha256:a"),
        (
            [_on("reg/team@sha256:b"), _on("reg/team@sha256:a", "bob"), _on("reg/team@sha256:a")],
            "reg/team@sha256:a",
        ),
        ([_on("reg/team@sha256:b"), _on("reg/team@sha256:a", "bob")], "reg/team@sha256:a"),
        ([_on("", "bob")], ""),
    ],
)
def test_the_image_workspaces_run_now_is_the_rollback_target(containers, expected):
    assert workspace.running_image(containers) == expected


def test_ports_own_container_and_removed_users_need_no_probe():
    plan = [asdict(ALICE), asdict(SSH)]
    probe, errors = workspace.ports_to_probe(
        plan,
        [
            container("gpuprov-alice-jupyter", "alice", "jupyter", port=20002),
            container("gpuprov-bob-ssh", "bob", port=20003),
        ],
    )
    assert errors == []
    assert probe == []


def test_port_held_by_another_planned_workspace_is_an_error_naming_both():
    plan = [asdict(ALICE), asdict(SSH)]
    probe, errors = workspace.ports_to_probe(
        plan, [container("gpuprov-alice-ssh", "alice", port=20002)]
    )
    assert [p["kind"] for p in probe] == ["ssh"]
    assert errors == [
        "port 20002 on 127.0.0.1 is held by gpuprov container 'gpuprov-alice-ssh', but user "
        "'alice' needs it for the jupyter workspace: give one of them another port in the inventory"
    ]


def test_stopped_containers_hold_no_port():
    probe, _ = workspace.ports_to_probe(
        [asdict(ALICE)], [container("gpuprov-alice-jupyter", "alice", state="exited", port=20002)]
    )
    assert probe == [asdict(ALICE)]


def test_a_crash_looping_own_container_needs_no_probe():
    """Between restarts docker ps lists no port, yet docker-proxy may hold it a moment later."""
    crashing = container("gpuprov-alice-jupyter", "alice", "jupyter", state="restarting")
    probe, errors = workspace.ports_to_probe([asdict(ALICE), asdict(SSH)], [crashing])
    assert errors == []
    assert [p["kind"] for p in probe] == ["ssh"]


def test_port_in_use_message_names_port_user_and_kind():
    message = workspace.port_in_use_message(asdict(ALICE), "process nc (pid 7)")
    assert message.startswith(
        "port 20002 on 127.0.0.1 is already in use by process nc (pid 7): user 'alice' needs it "
        "for the jupyter workspace."
    )


@pytest.mark.parametrize("token_given", [False, True])
def test_connect_summary_loopback_uses_the_host_as_jump(token_given):
    plans = [asdict(replace(ALICE, token_given=token_given)), asdict(SSH)]
    text = workspace.connect_summary("alice", "gpu1", "10.0.0.5", plans, "/etc/gpuprov/secrets")
    assert "ssh -N -L 20002:127.0.0.1:20002 10.0.0.5" in text
    assert "http://127.0.0.1:20002/lab" in text
    assert "ssh -J 10.0.0.5 -p 20003 alice@127.0.0.1" in text
    assert "Host gpuprov-alice-gpu1\n      HostName 127.0.0.1\n      Port 20003\n" in text
    assert "ProxyJump 10.0.0.5" in text
    if token_given:
        assert "Vault" in text and "jupyter-token" not in text
    else:
        assert "cat /etc/gpuprov/secrets/alice/jupyter-token" in text


def test_connect_summary_direct_address():
    plans = [asdict(replace(SSH, bind_address="10.20.0.21"))]
    text = workspace.connect_summary("alice", "ws", "ws.lan", plans, "/s")
    assert "ssh -p 20003 alice@10.20.0.21" in text
    assert "ProxyJump" not in text and "Jupyter" not in text


def test_connect_summary_on_the_controller_itself_needs_no_jump():
    plans = [asdict(ALICE), asdict(SSH)]
    text = workspace.connect_summary("alice", "localhost", "localhost", plans, "/s")
    assert "ssh -p 20003 alice@127.0.0.1" in text
    assert "http://127.0.0.1:20002/lab" in text
    assert "ProxyJump" not in text and "ssh -N -L" not in text


def test_ssh_forwarding_is_off_unless_the_user_asks_and_jupyter_never_hears_of_it():
    assert spec(SSH)["env"]["GPUPROV_SSH_FORWARDING"] == "no"
    asked = replace(SSH, port_forwarding=True)
    assert spec(asked)["env"]["GPUPROV_SSH_FORWARDING"] == "local"
    assert "GPUPROV_SSH_FORWARDING" not in spec()["env"]
    # The spec label changes with it, so the container is recreated with the new setting.
    assert spec(asked)["labels"] != spec(SSH)["labels"]


def test_jupyter_checks_host_headers_when_it_is_bound_to_loopback_only():
    local = spec(host_names=("10.20.0.21", "gpu1"))["env"]
    assert local["GPUPROV_JUPYTER_HOSTNAMES"] == "gpu1"  # Jupyter ignores addresses there
    assert local["GPUPROV_JUPYTER_REMOTE"] == "false"
    lan = spec(replace(ALICE, bind_address="10.20.0.21"), host_names=("gpu1",))["env"]
    assert lan["GPUPROV_JUPYTER_REMOTE"] == "true"  # reached by its address: no 403 for it


def test_each_user_has_a_network_of_their_own():
    assert spec()["network"] == spec(SSH)["network"] == "gpuprov-alice"
    assert spec(replace(ALICE, user="bob"))["network"] == "gpuprov-bob"
