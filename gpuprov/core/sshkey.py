"""OpenSSH public keys as they appear in authorized_keys lines."""

from __future__ import annotations

import base64
import binascii
import struct

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def problem(line: str) -> str | None:
    """Why ``line`` is not a usable public key, or None when it is one.

    The blob names its own type; checking it catches keys pasted in halves,
    private keys and type/blob mix-ups, which sshd rejects silently later.
    """
    if "PRIVATE KEY" in line:
        return "holds a PRIVATE key: paste the .pub file instead, and rotate this key"
    if "\n" in line.strip() or "\r" in line:
        return (
            "holds more than one line; each line would be a key of its own in "
            "authorized_keys (list each key as its own entry)"
        )
    parts = line.strip().split()
    if len(parts) < 2:
        return "is not '<type> <base64> [comment]' (paste the whole line of the .pub file)"
    key_type, blob = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        if any(part in KEY_TYPES for part in parts[1:]):
            return (
                "starts with authorized_keys options (from=, command=, …), which gpuprov "
                "does not pass on: a workspace's reach is set by its bind address and ports"
            )
        return f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}"
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return "the key data is not valid base64 (was the line cut or wrapped?)"
    if len(raw) < 4:
        return "the key data is too short"
    (length,) = struct.unpack(">I", raw[:4])
    embedded = raw[4 : 4 + length].decode("ascii", "replace")
    if embedded != key_type:
        return f"the key data says {embedded!r} but the line says {key_type!r}"
    fields = _fields(raw)
    if fields is None or (key_type == "ssh-ed25519" and [len(f) for f in fields[1:]] != [32]):
        return "the key data is cut short or has bytes past its end (was the line cut?)"
    if key_type == "ssh-rsa" and (bits := int.from_bytes(fields[-1], "big").bit_length()) < (
        RSA_MIN_BITS
    ):
        return (
            f"is a {bits}-bit RSA key, under the {RSA_MIN_BITS} bits NIST asks for "
            "(make a new one: ssh-keygen -t ed25519)"
        )
    return None


RSA_MIN_BITS = 2048


def _fields(raw: bytes) -> list[bytes] | None:
    """The length-prefixed fields of a key blob (RFC 4253), or None if they do not fit."""
    fields, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            return None
        (length,) = struct.unpack(">I", raw[at : at + 4])
        if at + 4 + length > len(raw):
            return None
        fields.append(raw[at + 4 : at + 4 + length])
        at += 4 + length
    return fields
