"""gpuprov_jupyter_health against an HTTP server that answers as Jupyter's /api/status."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import load

HEALTH = load("gpuprov_jupyter_health")
TOKEN = "t" * 48


@contextmanager
def serving(open_to_all: bool) -> Iterator[ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            allowed = open_to_all or self.headers.get("Authorization") == f"token {TOKEN}"
            self.send_response(200 if self.path == "/api/status" and allowed else 403)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "jupyter-token"
    path.write_text(TOKEN + "\n")
    return str(path)


def args(server, token_file: str) -> dict:
    return {"url": f"http://127.0.0.1:{server.server_port}", "token_file": token_file, "timeout": 2}


def test_status_reads_the_code_or_the_reason():
    with serving(open_to_all=False) as server:
        url = f"http://127.0.0.1:{server.server_port}/api/status"
        assert HEALTH.status(url, TOKEN) == 200
        assert HEALTH.status(url, None) == 403
    assert "refused" in str(HEALTH.status(url, TOKEN)).lower()


def test_a_workspace_that_wants_its_token_passes(token_file, run_module):
    with serving(open_to_all=False) as server:
        result = run_module(HEALTH, args(server, token_file))
    assert result.get("failed") is not True, result
    assert (result["with_token"], result["without_token"]) == (200, 403)


def test_a_workspace_open_without_a_token_fails(token_file, run_module):
    with serving(open_to_all=True) as server:
        result = run_module(HEALTH, args(server, token_file))
    assert result["failed"] is True and "WITHOUT a token" in result["msg"]


def test_a_missing_token_file_is_a_clear_error(tmp_path, run_module):
    with serving(open_to_all=False) as server:
        result = run_module(HEALTH, args(server, str(tmp_path / "none")))
    assert result["failed"] is True and "cannot read the Jupyter token file" in result["msg"]
