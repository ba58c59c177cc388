"""known_hosts read once: plain and hashed names, ports, mismatches, revoked keys."""

from __future__ import annotations

import base64
import hashlib
import hmac

from gpuprov.core.known_hosts import HostKeyVerdict, KnownHosts, host_name

KEY_A = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"a" * 36).decode()
KEY_B = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"b" * 36).decode()


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def known(text: str) -> KnownHosts:
    found = KnownHosts()
    found.add_text(text, "known_hosts")
    return found


def test_plain_names_and_ports():
    hosts = known(f"gpu1,10.0.0.1 ssh-ed25519 {KEY_A}\n[gpu2]:2222 ssh-ed25519 {KEY_B}\n")
    assert hosts.check("10.0.0.1", "ssh-ed25519", KEY_A) == (
        HostKeyVerdict.MATCH,
        "known_hosts:1",
    )
    assert hosts.check(host_name("gpu2", 2222), "ssh-ed25519", KEY_B)[0] is HostKeyVerdict.MATCH
    assert hosts.check("gpu2", "ssh-ed25519", KEY_B)[0] is HostKeyVerdict.UNKNOWN


def test_hashed_names_match_without_revealing_them():
    hosts = known(f"# a comment\n\n{hashed('[gpu3]:2200')} ssh-ed25519 {KEY_A}\n")
    assert hosts.check("[gpu3]:2200", "ssh-ed25519", KEY_A)[0] is HostKeyVerdict.MATCH
    assert hosts.check("[gpu4]:2200", "ssh-ed25519", KEY_A)[0] is HostKeyVerdict.UNKNOWN


def test_another_key_of_the_same_type_is_a_mismatch_and_names_the_line():
    hosts = known(f"gpu1 ssh-rsa AAAA\ngpu1 ssh-ed25519 {KEY_A}\n")
    assert hosts.check("gpu1", "ssh-ed25519", KEY_B) == (HostKeyVerdict.MISMATCH, "known_hosts:2")
    # known only with another key type: unknown, as OpenSSH would ask
    assert hosts.check("gpu1", "ecdsa-sha2-nistp256", KEY_B)[0] is HostKeyVerdict.UNKNOWN


def test_revoked_keys_and_certificate_authorities():
    hosts = known(
        f"@revoked * ssh-ed25519 {KEY_B}\n@revoked gpu1 ssh-ed25519 {KEY_A}\n"
        f"@cert-authority *.example ssh-ed25519 {KEY_B}\ngpu1 ssh-ed25519 {KEY_A}\n"
    )
    assert hosts.check("gpu1", "ssh-ed25519", KEY_A)[0] is HostKeyVerdict.REVOKED
    assert hosts.check("x.example", "ssh-ed25519", KEY_B)[0] is HostKeyVerdict.UNKNOWN


def test_broken_lines_are_skipped():
    hosts = known(f"garbage\n|1|not base64| ssh-ed25519 {KEY_A}\ngpu1 ssh-ed25519 {KEY_A}\n")
    assert hosts.check("gpu1", "ssh-ed25519", KEY_A)[0] is HostKeyVerdict.MATCH


def test_missing_files_are_no_entries(tmp_path):
    assert KnownHosts.load([tmp_path / "none"]).entries("gpu1") == []


def test_each_of_a_thousand_hashed_lines_answers_for_its_own_host_only():
    # bench/fleet_status.py measures the speed; this is about being right at size.
    text = "".join(
        f"{hashed(f'[10.0.0.{i % 250}]:{2000 + i}', salt=bytes([i % 256]) * 20)} "
        f"ssh-ed25519 {KEY_A if i % 2 else KEY_B}\n"
        for i in range(1000)
    )
    hosts = known(text)
    for i in (0, 1, 500, 999):
        own = KEY_A if i % 2 else KEY_B
        assert hosts.check(f"[10.0.0.{i % 250}]:{2000 + i}", "ssh-ed25519", own) == (
            HostKeyVerdict.MATCH,
            f"known_hosts:{i + 1}",
        )
    assert hosts.entries("[10.0.0.1]:2000") == []
