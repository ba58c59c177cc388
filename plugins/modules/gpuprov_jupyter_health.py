#!/usr/bin/python
"""Check a Jupyter workspace's auth without the token ever leaving the host."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gpuprov_jupyter_health
short_description: Check that a Jupyter server answers with its token and refuses without it
description:
  - Reads the token from a file on the host, asks C(/api/status) with it (expects 200) and
    without it (expects 403). The token is never returned or logged.
options:
  url:
    description: Base URL of the server, e.g. http://127.0.0.1:28000.
    type: str
    required: true
  token_file:
    description: File on the host holding the token.
    type: path
    required: true
  timeout:
    description: Seconds to wait for the server to answer with the token.
    type: int
    default: 60
author: gpuprov
"""

EXAMPLES = r"""
- name: Check Jupyter
  gpuprov_jupyter_health:
    url: http://127.0.0.1:28000
    token_file: /etc/gpuprov/secrets/demo/jupyter-token
"""

RETURN = r"""
with_token:
  description: HTTP status with the token.
  type: int
  returned: always
without_token:
  description: HTTP status without the token.
  type: int
  returned: always
"""


def status(url: str, token: str | None) -> int | str:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "token_file": {"type": "path", "required": True, "no_log": False},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    url = module.params["url"].rstrip("/") + "/api/status"
    try:
        with open(module.params["token_file"], encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as error:
        module.fail_json(msg=f"cannot read the Jupyter token file: {error}")
    deadline = time.monotonic() + module.params["timeout"]
    with_token = status(url, token)
    while with_token != 200 and time.monotonic() < deadline:
        time.sleep(1)
        with_token = status(url, token)
    without_token = status(url, None)
    result = {"changed": False, "with_token": with_token, "without_token": without_token}
    if with_token != 200:
        module.fail_json(
            msg=f"Jupyter at {url} did not answer 200 with the user's token "
            f"(got {with_token}): see the container's log",
            **result,
        )
    if without_token != 403:
        module.fail_json(
            msg=f"Jupyter at {url} answered {without_token} WITHOUT a token "
            "(expected 403): the workspace is open to anyone who reaches the port",
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
