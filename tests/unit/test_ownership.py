"""Directories and files owned by numeric ids, as the workspaces role makes them."""

from __future__ import annotations

import os

import pytest

from gpuprov.core.ownership import HIDDEN, UnexpectedPath, ensure_directory, ensure_file

UID, GID = 4242, 4243  # ids no host user has: the case the module exists for


@pytest.fixture(autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.fail("chown to other ids needs root (the suite runs as root, as CI does)")


def test_a_directory_is_planned_in_check_mode_then_made_then_left_alone(tmp_path):
    path = str(tmp_path / "alice" / "home")
    planned = ensure_directory(path, UID, GID, "0700", check=True)
    assert planned.changed and not os.path.exists(path)
    assert planned.before["state"] == "absent"
    assert planned.after == {
        "path": path,
        "state": "directory",
        "owner": UID,
        "group": GID,
        "mode": "0700",
        "content": None,
    }
    made = ensure_directory(path, UID, GID, "0700", check=False)
    st = os.stat(path)
    assert made.changed and (st.st_uid, st.st_gid, st.st_mode & 0o777) == (UID, GID, 0o700)
    assert not ensure_directory(path, UID, GID, "0700", check=True).changed
    assert not ensure_directory(path, UID, GID, "0700", check=False).changed


def test_a_directory_with_other_ids_or_mode_is_fixed(tmp_path):
    path = str(tmp_path / "d")
    os.mkdir(path, 0o755)
    outcome = ensure_directory(path, UID, GID, "0700", check=False)
    assert outcome.changed
    assert (outcome.before["owner"], outcome.before["mode"]) == (0, "0755")
    assert os.stat(path).st_uid == UID


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def test_a_file_is_written_once_and_kept_when_not_replaced(tmp_path):
    path = str(tmp_path / "token")
    first = ensure_file(path, "s3cret", UID, 0, "0400", replace=False, check=False)
    assert first.changed and _read(path) == "s3cret"
    assert first.after["content"] == HIDDEN and "s3cret" not in repr(first)
    kept = ensure_file(path, "other", UID, 0, "0400", replace=False, check=False)
    assert not kept.changed and _read(path) == "s3cret"
    replaced = ensure_file(path, "other", UID, 0, "0400", replace=True, check=True)
    assert replaced.changed and _read(path) == "s3cret"  # check mode
    ensure_file(path, "other", UID, 0, "0400", replace=True, check=False)
    st = os.stat(path)
    assert _read(path) == "other"
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (UID, 0, 0o400)
    assert os.listdir(tmp_path) == ["token"], "a temporary file was left behind"


def test_public_content_shows_in_the_diff(tmp_path):
    path = str(tmp_path / "authorized_keys")
    outcome = ensure_file(
        path,
        "ssh-ed25519 AAAA a@b\n",
        UID,
        GID,
        "0600",
        replace=True,
        check=True,
        show_content=True,
    )
    assert outcome.after["content"] == "ssh-ed25519 AAAA a@b\n"


def test_only_the_mode_changes_when_only_the_mode_differs(tmp_path):
    path = tmp_path / "keys"
    path.write_text("k\n")
    inode = path.stat().st_ino
    outcome = ensure_file(str(path), "k\n", UID, GID, "0600", replace=True, check=False)
    assert outcome.changed and path.stat().st_ino == inode
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_something_else_at_a_file_path_is_never_replaced(tmp_path, kind):
    path = tmp_path / "token"
    if kind == "symlink":
        path.symlink_to("/etc/passwd")
    else:
        path.mkdir()
    with pytest.raises(UnexpectedPath, match="move it away by hand"):
        ensure_file(str(path), "x", UID, 0, "0400", replace=True, check=False)
    assert path.is_symlink() or path.is_dir()


def test_a_bad_mode_says_what_a_mode_looks_like(tmp_path):
    with pytest.raises(ValueError, match="not an octal mode"):
        ensure_directory(str(tmp_path / "d"), UID, GID, "rwx", check=True)
