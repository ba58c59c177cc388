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
    parts = line.strip().split()
    if len(parts) < 2:
        return "is not '<type> <base64> [comment]' (paste the whole line of the .pub file)"
    key_type, blob = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        if "PRIVATE KEY" in line:
            return "is a PRIVATE key: paste the .pub file instead, and rotate this key"
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
    return None
