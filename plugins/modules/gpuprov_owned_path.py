#!/usr/bin/python
"""A directory or file with a numeric owner and group that need no name on the host."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.ownership import (
    UnexpectedPath,
    ensure_directory,
    ensure_file,
)

DOCUMENTATION = r"""
module: gpuprov_owned_path
short_description: Make a directory or file owned by a uid and gid that exist only in containers
description:
  - Creates the directory (missing parents root-owned 0755) or writes the file (atomically,
    never readable with looser modes), and sets its numeric owner, group and mode.
  - Unlike C(ansible.builtin.file) and C(ansible.builtin.copy), it does not look the ids up on
    the host, so check mode prints no warning for workspace users that exist only in containers.
  - Something of another kind at the path is an error; it is never replaced.
options:
  path:
    description: The directory or file.
    type: path
    required: true
  state:
    description: C(directory) or C(file).
    type: str
    choices: [directory, file]
    default: directory
  content:
    description: The file's content (state C(file)); give the task C(no_log) for a secret.
    type: str
  replace:
    description: Replace a file whose content differs; C(false) keeps an existing file's content.
    type: bool
    default: true
  show_content:
    description: Show the content in the diff (for public data such as authorized keys).
    type: bool
    default: false
  owner:
    description: Numeric uid.
    type: int
    required: true
  group:
    description: Numeric gid.
    type: int
    required: true
  mode:
    description: Octal mode, as a string such as C("0700").
    type: str
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: gpuprov
"""

EXAMPLES = r"""
- name: Create the user's home directory
  gpuprov_owned_path:
    path: /srv/gpuprov/alice/home
    owner: 1001
    group: 1001
    mode: "0700"

- name: Install the user's authorized keys
  gpuprov_owned_path:
    path: /srv/gpuprov/alice/ssh/authorized_keys
    state: file
    content: "ssh-ed25519 AAAA... alice@laptop\n"
    show_content: true
    owner: 1001
    group: 1001
    mode: "0600"
"""

RETURN = r"""
path:
  description: The directory or file.
  type: str
  returned: always
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["directory", "file"], "default": "directory"},
            "content": {"type": "str"},
            "replace": {"type": "bool", "default": True},
            "show_content": {"type": "bool", "default": False},
            "owner": {"type": "int", "required": True},
            "group": {"type": "int", "required": True},
            "mode": {"type": "str", "required": True},
        },
        required_if=[("state", "file", ("content",))],
        supports_check_mode=True,
    )
    p = module.params
    ids = (p["owner"], p["group"], p["mode"])
    try:
        if p["state"] == "directory":
            outcome = ensure_directory(p["path"], *ids, check=module.check_mode)
        else:
            outcome = ensure_file(
                p["path"],
                p["content"],
                *ids,
                replace=p["replace"],
                check=module.check_mode,
                show_content=p["show_content"],
            )
    except (UnexpectedPath, OSError, ValueError) as error:
        module.fail_json(msg=f"{p['path']}: {error}", path=p["path"])
    module.exit_json(
        changed=outcome.changed,
        path=p["path"],
        diff={"before": outcome.before, "after": outcome.after},
    )


if __name__ == "__main__":
    main()
