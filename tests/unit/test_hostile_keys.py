"""Class 9 of hostile inventories: SSH keys and Jupyter credentials."""

from __future__ import annotations

import base64
import struct

import pytest
from hostile import Case, alice_with, assert_case, users

ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXJ9Xq8ycIUk5VvbGM9bb1NuYdAfnrUZmwLt9yZz2F1 alice@lab"
)
KEYS = "gpuprov_users[0].ssh_keys[0]"


def rsa(bits: int) -> str:
    """An ssh-rsa public key line whose modulus has ``bits`` bits (RFC 4253 layout)."""

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    modulus = (1 << (bits - 1)) | 0xD5
    blob = (
        string(b"ssh-rsa")
        + string(b"\x01\x00\x01")
        + string(b"\x00" + modulus.to_bytes(bits // 8, "big"))
    )
    return f"ssh-rsa {base64.b64encode(blob).decode()} alice@old"


def key(line: str, words: str = "") -> Case:
    entry = alice_with(f"ssh_keys:\n  - {line}").replace("{kind: jupyter}", "{kind: ssh}")
    files = users(entry)
    return Case(files, ("users.yml", "user 'alice'", KEYS, words) if words else None)


def alice(extra: str, key_: str, words: str) -> Case:
    return Case(
        users(alice_with(extra)), ("users.yml", "user 'alice'", f"gpuprov_users[0].{key_}", words)
    )


PRIVATE = (
    "|\n      "
    + ED25519
    + "\n      -----BEGIN OPENSSH PRIVATE KEY-----\n      b3BlbnNzaC1rZXktdjEAAAAA\n"
)

CASES = {
    "two keys in one entry": key(f'"{ED25519}\\n{ED25519}"', "holds more than one line"),
    "a key followed by a pasted private key": key(PRIVATE, "holds a PRIVATE key"),
    "a private key alone": key('"-----BEGIN OPENSSH PRIVATE KEY-----"', "holds a PRIVATE key"),
    "a 1024-bit RSA key": key(rsa(1024), "is a 1024-bit RSA key"),
    "authorized_keys options": key(f"'from=\"10.0.0.0/8\" {ED25519}'", "authorized_keys options"),
    "a forced command": key(f"'command=\"/bin/sh\" {ED25519}'", "authorized_keys options"),
    "a key cut in half": key(ED25519[:40], "cut short"),
    "a key not even base64": key("ssh-ed25519 AAAA#C3Nz", "not valid base64"),
    "a password that is not a hash": alice(
        "jupyter_password_hash: hunter2", "jupyter_password_hash", "is not a hash"
    ),
    # What a team may write.
    "an ed25519 key": key(ED25519),
    "a 3072-bit RSA key": key(rsa(3072)),
    "an argon2 hash": Case(users(alice_with(
        "jupyter_password_hash: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3030\n"
    ))),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_key_and_credential_case(name, tmp_path, capsys):
    assert_case(CASES[name], tmp_path, capsys)
