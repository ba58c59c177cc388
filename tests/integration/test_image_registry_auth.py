"""The pull from a registry that demands a login: the bed's second registry (htpasswd,
plain HTTP) holds a tiny labelled image; the role refuses to pull it without
credentials, pulls it with a vaulted password, changes nothing the second time, and
the password appears in no output, only in the host's ~/.docker/config.json."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from test_image_flow import changed, image_on, playbook
from testbed import TestBed

from gpuprov.core.image_pin import pin_from_image

BIN = Path(sys.executable).parent
USER = "gpuprov-ci"
HOST = "h100"
# The labels gpuprov's template writes; the pull verifies them against the pin's promises.
LABELS = {
    "org.gpuprov.python": "3.11",
    "org.gpuprov.torch": "2.13.0+cpu",
    "org.gpuprov.cuda": "none",
    "org.gpuprov.cudnn": "none",
    "org.gpuprov.package-manager": "pip",
}


@pytest.fixture(scope="module")
def password() -> str:
    return "pw-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def auth_registry(testbed: TestBed, password: str) -> str:
    return testbed.start_auth_registry(USER, password)


@pytest.fixture(scope="module")
def pin(
    testbed: TestBed, docker_env: dict, auth_registry: str, password: str, tmp_path_factory
) -> dict:
    """A tiny image (the bed's shell image plus gpuprov's labels) pushed to the
    authenticated registry by the outer engine after `docker login`; its pin."""
    config = tmp_path_factory.mktemp("docker-config")  # not the controller's ~/.docker
    env = {**os.environ, **docker_env, "DOCKER_CONFIG": str(config)}

    def docker(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["docker", *args], env=env, input=stdin, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"docker {args[0]}: {done.stdout}{done.stderr}"
        return done.stdout

    reference = f"{auth_registry}/team/auth-check"
    dockerfile = f"FROM {testbed.shell_image()}\n" + "".join(
        f'LABEL "{k}"="{v}"\n' for k, v in LABELS.items()
    )
    docker("build", "-q", "-t", f"{reference}:1", "-", stdin=dockerfile)
    refused = subprocess.run(
        ["docker", "push", f"{reference}:1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0, "the registry must refuse an anonymous push"
    docker("login", "-u", USER, "--password-stdin", auth_registry, stdin=password)
    docker("push", f"{reference}:1")
    image = json.loads(docker("image", "inspect", f"{reference}:1"))[0]
    return pin_from_image(image, reference)


def write_inventory(
    testbed: TestBed, path: Path, registry: dict, vault_pass: Path | None = None
) -> Path:
    """The bed's hosts, gpuprov_registry in group_vars/all (the password vaulted there)."""
    inventory = testbed.write_inventory(path / "hosts.yml")
    group_vars = path / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    (group_vars / "registry.yml").write_text(
        "gpuprov_registry:\n"
        + "".join(f"  {line}\n" for line in registry_yaml(registry, vault_pass))
    )
    return inventory


def registry_yaml(registry: dict, vault_pass: Path | None) -> list[str]:
    lines = [f"{k}: {json.dumps(v)}" for k, v in registry.items() if k != "password"]
    if "password" in registry:
        assert vault_pass, "the password goes into the inventory only vaulted"
        vaulted = subprocess.run(
            [
                str(BIN / "ansible-vault"),
                "encrypt_string",
                "--vault-password-file",
                str(vault_pass),
                "--stdin-name",
                "password",
            ],
            input=registry["password"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        lines += vaulted.stdout.splitlines()
    return lines


def test_the_pull_logs_in_and_never_shows_the_password(
    testbed: TestBed, auth_registry: str, pin: dict, password: str, tmp_path: Path
) -> None:
    ref = f"{pin['reference']}@{pin['digest']}"
    vault_pass = tmp_path / "vault-pass"
    vault_pass.write_text(secrets.token_hex(16) + "\n")
    vault = ("--vault-password-file", str(vault_pass))
    # The shell image has no python3, which gpuprov's audit runs in the image; this test is
    # about the registry login, the pull and its verification (digest, id, labels).
    extra = {"gpuprov_image": pin, "team_image_audit": False, "team_image_min_free": "1g"}
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()
    testbed.ssh(HOST, f"docker logout {auth_registry} >/dev/null; docker image rm -f {ref} || true")
    try:
        # Without credentials: gpuprov's error names the reference and the registry's refusal.
        anonymous = write_inventory(
            testbed, tmp_path / "anonymous", {"address": auth_registry, "insecure": True}
        )
        out = playbook(anonymous, "playbooks/image.yml", "-l", HOST, extra=extra, check=False)
        assert out.returncode != 0
        assert f"could not pull {ref}" in out.stdout, out.stdout[-3000:]
        assert "no basic auth credentials" in out.stdout, out.stdout[-3000:]
        assert "the registry wants a login (set gpuprov_registry.username" in out.stdout
        assert image_on(testbed, HOST, ref) is None

        registry = {
            "address": auth_registry,
            "username": USER,
            "password": password,
            "insecure": True,
        }
        # A wrong password stops the play at the login, saying why without the password.
        wrong = write_inventory(
            testbed, tmp_path / "wrong", {**registry, "password": "not-" + password}, vault_pass
        )
        refused = playbook(
            wrong, "playbooks/image.yml", "-v", *vault, "-l", HOST, extra=extra, check=False
        )
        assert refused.returncode != 0
        assert "TASK [team_image : Log in to the team registry]" in refused.stdout
        assert f"refused the login of {registry['username']} on {HOST}" in refused.stdout
        assert "not-" + password not in refused.stdout + refused.stderr
        assert "Pull the pinned digest from the team registry" not in refused.stdout
        inventory = write_inventory(testbed, tmp_path / "login", registry, vault_pass)
        assert password not in inventory.parent.joinpath("group_vars/all/registry.yml").read_text()
        first = playbook(inventory, "playbooks/image.yml", "-v", *vault, "-l", HOST, extra=extra)
        found = image_on(testbed, HOST, ref)
        assert found and found["Id"] == pin["id"] and ref in found["RepoDigests"]
        assert changed(first.stdout)[HOST] >= 1
        # -vvv as well: docs/image.md promises the password is hidden at any verbosity.
        second = playbook(inventory, "playbooks/image.yml", "-vvv", *vault, "-l", HOST, extra=extra)
        assert changed(second.stdout) == {HOST: 0}, second.stdout[-3000:]
        for run in (out, refused, first, second):
            output = run.stdout + run.stderr
            assert password not in output and basic not in output

        # What docs/image.md says: the login that pulled is gone again, so the password
        # (user:password in base64) does not stay in root's ~/.docker/config.json.
        config = testbed.ssh(HOST, "cat /root/.docker/config.json 2>/dev/null || echo {}")
        assert auth_registry not in json.loads(config.stdout).get("auths", {})
        assert basic not in config.stdout
    finally:
        testbed.ssh(HOST, f"docker logout {auth_registry} >/dev/null", check=False)
