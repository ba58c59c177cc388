"""Directories and files owned by numeric ids that need not exist on the host.

Workspace users exist only inside their containers, so their uid and gid have
no name on the host. Ansible's file and copy modules warn about every such id
in check mode ("failed to look up user with uid ..."); this compares and sets
ids as numbers, for the gpuprov_owned_path module.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import asdict, dataclass

# What a diff shows in place of a file's content unless the caller allows it.
HIDDEN = "(content not shown)"


@dataclass(frozen=True)
class PathState:
    path: str
    state: str  # "directory", "file", "absent", or "other" (a link, a socket, ...)
    owner: int | None = None
    group: int | None = None
    mode: str | None = None
    content: str | None = None


class UnexpectedPath(ValueError):
    """Something of another kind is at the path: gpuprov never replaces it."""


def _octal(mode: str) -> str:
    try:
        return f"{int(mode, 8):04o}"
    except ValueError:
        raise ValueError(f"mode {mode!r} is not an octal mode such as '0700'") from None


def observe(path: str, *, read: bool = False) -> PathState:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return PathState(path, "absent")
    if stat.S_ISDIR(st.st_mode):
        kind = "directory"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    content = None
    if read and kind == "file":
        with open(path, encoding="utf-8", errors="replace") as handle:
            content = handle.read()
    return PathState(path, kind, st.st_uid, st.st_gid, f"{stat.S_IMODE(st.st_mode):04o}", content)


def _refuse(before: PathState, wanted: str) -> None:
    if before.state not in ("absent", wanted):
        raise UnexpectedPath(
            f"{before.path} exists and is not a {wanted}: move it away by hand "
            f"(gpuprov does not replace or delete what is there)"
        )


def _shown(state: PathState, show: bool) -> dict:
    found = asdict(state)
    if found["content"] is not None and not show:
        found["content"] = HIDDEN
    return found


@dataclass(frozen=True)
class Outcome:
    changed: bool
    before: dict
    after: dict


def ensure_directory(path: str, owner: int, group: int, mode: str, *, check: bool) -> Outcome:
    """Make `path` a directory with these ids and mode; nothing changes when `check`.

    Missing parents are created root-owned 0755, as `mkdir -p` would.
    """
    before = observe(path)
    _refuse(before, "directory")
    wanted = PathState(path, "directory", owner, group, _octal(mode))
    if before == wanted:
        return Outcome(False, asdict(before), asdict(before))
    if not check:
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        if before.state == "absent":
            os.mkdir(path, 0o700)
        os.chown(path, owner, group)
        os.chmod(path, int(mode, 8))
    return Outcome(True, asdict(before), asdict(wanted))


def ensure_file(
    path: str,
    content: str,
    owner: int,
    group: int,
    mode: str,
    *,
    replace: bool,
    check: bool,
    show_content: bool = False,
) -> Outcome:
    """Make `path` a file with this content, ids and mode; nothing changes when `check`.

    With `replace` false an existing file keeps its content (a token made once).
    The content is written to a private temporary file beside the target and
    renamed over it, so no reader ever sees it half-written or with looser modes.
    """
    before = observe(path, read=True)
    _refuse(before, "file")
    keep = before.state == "file" and not replace
    wanted = PathState(
        path, "file", owner, group, _octal(mode), before.content if keep else content
    )
    if before == wanted:
        shown = _shown(before, show_content)
        return Outcome(False, shown, shown)
    if not check:
        if before.content == wanted.content:
            os.chown(path, owner, group)
            os.chmod(path, int(mode, 8))
        else:
            directory = os.path.dirname(path) or "."
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=".gpuprov-")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(content)
                os.chown(temporary, owner, group)
                os.chmod(temporary, int(mode, 8))
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
    return Outcome(True, _shown(before, show_content), _shown(wanted, show_content))
