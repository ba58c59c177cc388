"""Listeners of a port read from /proc/net/tcp text, as the kernel writes it."""

from gpuprov.core.sockets import listening_sockets

# /proc/net/tcp of a host with sshd on 22, a workspace's 20002 in TIME_WAIT, and a
# client connection from port 20002 (not a listener).
TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1595 1 0000000089d5531a 100 0 0 10 0
   1: 0100007F:4E22 00000000:0000 06 00000000:00000000 03:00000fd2 00000000     0        0 0 3 0000000000000000
   2: 0100007F:4E22 0100007F:9C4E 01 00000000:00000000 00:00000000 00000000  2001        0 48211 1 00000000a1b2c3d4 20 4 30 10 -1
"""  # noqa: E501 (the kernel's lines)
TABLE6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:4E22 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77120 1 00000000deadbeef 100 0 0 10 0
"""  # noqa: E501


def test_a_listener_is_found_by_its_port():
    assert listening_sockets(TABLE, 22) == {"socket:[1595]"}


def test_connections_and_time_wait_are_not_listeners():
    assert listening_sockets(TABLE, 20002) == set()


def test_the_ipv6_table_reads_the_same():
    assert listening_sockets(TABLE6, 20002) == {"socket:[77120]"}


def test_a_header_alone_has_no_listener():
    assert listening_sockets(TABLE.splitlines()[0], 22) == set()
