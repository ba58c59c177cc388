"""OpenSSH known_hosts, read once per run and checked without re-reading it.

paramiko's own loader compares every new line with every line before it, and
its lookup hashes every line again, so a 1,000-line hashed file (Debian hashes
by default) cost about 0.4 s to load and 40 ms per host. Here a file is read
once: plain names go into a dict, hashed entries keep their salt and digest,
and a host costs one HMAC per hashed line and no key parsing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class HostKeyVerdict(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"  # the host is known with another key: refuse
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class _Entry:
    key_type: str
    key: str  # base64, as in the file
    where: str  # "file:line", for messages
    revoked: bool = False


@dataclass
class KnownHosts:
    plain: dict[str, list[_Entry]] = field(default_factory=dict)
    hashed: list[tuple[bytes, bytes, _Entry]] = field(default_factory=list)

    def add_text(self, text: str, source: str) -> None:
        for number, raw in enumerate(text.splitlines(), start=1):
            fields = raw.split()
            if not fields or fields[0].startswith("#"):
                continue
            revoked = fields[0] == "@revoked"
            if fields[0].startswith("@"):
                # @cert-authority lines sign host certificates; gpuprov checks plain keys.
                if not revoked:
                    continue
                fields = fields[1:]
            if len(fields) < 3:
                continue
            names, key_type, key = fields[0], fields[1], fields[2]
            entry = _Entry(key_type, key, f"{source}:{number}", revoked)
            if names.startswith("|1|"):
                try:
                    _, _, salt, digest = names.split("|", 3)
                    self.hashed.append((base64.b64decode(salt), base64.b64decode(digest), entry))
                except (ValueError, binascii.Error):
                    continue
            else:
                for name in names.split(","):
                    self.plain.setdefault(name, []).append(entry)

    @classmethod
    def load(cls, paths: list[Path]) -> KnownHosts:
        found = cls()
        for path in paths:
            try:
                found.add_text(path.read_text(errors="replace"), str(path))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
        return found

    def entries(self, host: str) -> list[_Entry]:
        """Every line naming `host` ("name" on port 22, "[name]:port" on others)."""
        matches = list(self.plain.get(host, []))
        for salt, digest, entry in self.hashed:
            if hmac.compare_digest(hmac.new(salt, host.encode(), hashlib.sha1).digest(), digest):
                matches.append(entry)
        return matches

    def check(self, host: str, key_type: str, key: str) -> tuple[HostKeyVerdict, str | None]:
        """The verdict for the key a host showed, and the line that decided it."""
        entries = self.entries(host)
        if any(e.revoked and e.key == key for e in entries):
            where = next(e.where for e in entries if e.revoked and e.key == key)
            return HostKeyVerdict.REVOKED, where
        same_type = [e for e in entries if not e.revoked and e.key_type == key_type]
        if any(e.key == key for e in same_type):
            return HostKeyVerdict.MATCH, next(e.where for e in same_type if e.key == key)
        if same_type:
            return HostKeyVerdict.MISMATCH, same_type[0].where
        return HostKeyVerdict.UNKNOWN, None


def host_name(address: str, port: int) -> str:
    """How known_hosts names a host: the bare name on port 22, else "[name]:port"."""
    return address if port == 22 else f"[{address}]:{port}"
