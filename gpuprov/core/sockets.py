"""Who listens on a port, from the kernel's socket tables (/proc/net/tcp, tcp6)."""

from __future__ import annotations

# The tables a port's listeners are in, and the state /proc/net/tcp writes for LISTEN.
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"


def listening_sockets(table: str, port: int) -> set[str]:
    """The sockets listening on ``port`` in one table, as /proc/PID/fd links name them
    (``socket:[INODE]``)."""
    found = set()
    for row in table.splitlines()[1:]:
        fields = row.split()
        if len(fields) > 9 and fields[3] == _LISTEN:
            _, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port:
                found.add(f"socket:[{fields[9]}]")
    return found
