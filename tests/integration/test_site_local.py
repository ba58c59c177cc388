"""`ansible-playbook site.yml` on inventories/local, for real, on this machine.

This is the README's first command: Docker installed and started when
missing, the CPU team image built here, the demo user's Jupyter and SSH
workspaces started. The test then uses them as the user would.

It runs the README's own inventory, so it shares the demo user with `make run`:
when the demo was already provisioned here (its data directory exists), the
test leaves its workspaces, files and engine as it found them; otherwise it
removes the containers and directories it created. The team image stays, so
a later `make run` does not rebuild it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.layouts import conda_pkg
from support.wheels import make_wheel

REPO = Path(__file__).resolve().parents[2]
SOCKET = Path("/var/run/docker.sock")
STARTED_MARKER = Path("/run/gpuprov-docker-started")  # written when gpuprov starts the engine
SECRETS_DIR = Path("/etc/gpuprov/secrets/demo")
# The rollout's SSH probe key (and its public half), made by the workspaces role.
PROBE_KEYS = (Path("/etc/gpuprov/probe_ed25519"), Path("/etc/gpuprov/probe_ed25519.pub"))
TOKEN = SECRETS_DIR / "jupyter-token"
DATA_DIR = Path("/srv/gpuprov/demo")
HOME_DIR = DATA_DIR / "home"
JUPYTER = "http://127.0.0.1:28000/api/status"
SSH_PORT = "28001"


def playbook(*args: str, play: str = "site.yml") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    env["PATH"] = f"{REPO / '.venv/bin'}:{env['PATH']}"
    return subprocess.run(
        ["ansible-playbook", play, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "-H", f"unix://{SOCKET}", *args], capture_output=True, text=True, timeout=120
    )


def recap(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("localhost ")]
    assert lines, output[-3000:]
    return lines[-1]


def status(token: str | None) -> int:
    request = urllib.request.Request(JUPYTER)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def engine_was_up() -> bool:
    return docker("version").returncode == 0


@pytest.fixture(scope="module")
def site_run(engine_was_up: bool) -> Iterator[subprocess.CompletedProcess[str]]:
    # With the engine down its containers cannot be listed: the data directory
    # is what says `make run` provisioned the demo here before.
    provisioned = DATA_DIR.exists()
    created = [path for path in (DATA_DIR, SECRETS_DIR) if not path.exists()]
    made_keys = [path for path in PROBE_KEYS if not path.exists()]
    try:
        yield playbook()
    finally:
        if not provisioned:
            for kind in ("jupyter", "ssh"):
                docker("rm", "--force", f"gpuprov-demo-{kind}")
        if not engine_was_up:
            # The playbook started the engine for this test: `make stop` stops it.
            stopped = playbook(play="playbooks/stop.yml")
            assert stopped.returncode == 0, stopped.stdout[-3000:]
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        for path in made_keys:
            path.unlink(missing_ok=True)


def test_site_runs_green_on_this_machine(site_run):
    assert site_run.returncode == 0, site_run.stdout[-4000:] + site_run.stderr[-2000:]
    assert "failed=0" in recap(site_run.stdout)
    # A first run shows no failure that is not one (Debian's init script once
    # failed on `ulimit` here and was rescued, printing a red error).
    assert "rescued=0" in recap(site_run.stdout)
    assert "FAILED!" not in site_run.stdout and "[ERROR]" not in site_run.stderr


def test_jupyter_answers_with_the_token_only(site_run):
    token = TOKEN.read_text().strip()
    assert len(token) >= 32
    assert status(token) == 200
    assert status(None) == 403
    assert status("not-the-token") == 403
    assert TOKEN.stat().st_mode & 0o077 == 0, "the token is readable by others"


def test_the_token_never_appears_in_the_output(site_run):
    token = TOKEN.read_text().strip()
    assert token not in site_run.stdout + site_run.stderr
    inspect = docker("inspect", "gpuprov-demo-jupyter")
    assert token not in inspect.stdout, "the token is visible in docker inspect"


def demo_ssh(command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``command`` in the demo's SSH workspace, logged in with this machine's key."""
    return subprocess.run(
        ["ssh", "-p", SSH_PORT, "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         "demo@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_ssh_login_with_the_users_key_lands_files_on_the_volume(site_run):
    marker = f"written-by-test-{os.getpid()}"
    login = demo_ssh(
        f"id && touch ~/{marker} && python -c 'import torch; print(torch.ones(3).sum().item())'"
    )
    assert login.returncode == 0, login.stderr
    assert "uid=1500(demo)" in login.stdout
    assert "3.0" in login.stdout, "torch does not compute inside the workspace"
    written = HOME_DIR / marker
    try:
        assert written.stat().st_uid == 1500
    finally:
        written.unlink(missing_ok=True)


def test_second_run_and_check_mode_change_nothing(site_run):
    again = playbook()
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in recap(again.stdout)
    check = playbook("--check", "--diff")
    assert check.returncode == 0, check.stdout[-3000:]
    assert "changed=0" in recap(check.stdout)
    # The demo's uid has no name on this machine: nothing may warn about it.
    assert "failed to look up" not in check.stdout + check.stderr


def test_stop_keeps_every_file_and_site_starts_it_again(site_run, engine_was_up):
    if engine_was_up:
        pytest.skip(
            "this machine's Docker engine ran before the test: stopping it would stop its "
            "owner's work (CI starts from a stopped engine and runs this)"
        )
    assert STARTED_MARKER.read_text().strip() in ("systemd", "init", "direct")
    stop = playbook(play="playbooks/stop.yml")
    assert stop.returncode == 0, stop.stdout[-3000:]
    assert docker("version").returncode != 0, "the engine gpuprov started still answers"
    assert not STARTED_MARKER.exists()
    assert TOKEN.is_file() and HOME_DIR.is_dir(), "make stop removed a file"
    again = playbook(play="playbooks/stop.yml")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "was not started by gpuprov" in again.stdout
    assert "changed=0" in recap(again.stdout)
    restarted = playbook()
    assert restarted.returncode == 0, restarted.stdout[-3000:]
    assert status(TOKEN.read_text().strip()) == 200


# --- users' own packages (after the idempotence checks: what users install changes what
# their connection note says, so a run after these is not a second run of the first)


LAYERS = HOME_DIR / ".local/gpuprov"
LAYER = LAYERS / "py3.11-torch2.13.0-cpu"
OLD_LAYER = LAYERS / "py3.11-torch2.12.0-cpu"  # as an earlier pin would have named it
EXTRA = "gpuprov-demo-extra"
WHERE = "python -c 'import gpuprov_demo_extra as x, torch; print(x.__file__, torch.__file__)'"


@pytest.fixture
def wheels() -> Iterator[Path]:
    """A pure-Python wheel in the demo's home (no index is reachable from a workspace);
    what the test installed is removed after it, the user's other files stay."""
    layers_before = LAYERS.exists()
    directory = HOME_DIR / f"test-wheels-{os.getpid()}"
    make_wheel(directory, EXTRA, "0.1")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(OLD_LAYER, ignore_errors=True)
        demo_ssh(f"pip uninstall -y -q {EXTRA}")
        if not layers_before:
            shutil.rmtree(LAYERS, ignore_errors=True)


def test_users_add_packages_with_pip_into_their_layer(site_run, wheels):
    """pip as the user types it: into the layer on the home volume, importable beside the
    team's torch over SSH and in Jupyter, kept across re-creation, one layer per image."""
    installed = demo_ssh(
        f"pip install -q --no-cache-dir --no-index --find-links ~/{wheels.name} {EXTRA} && {WHERE}"
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    extra, torch = installed.stdout.split()
    assert extra.startswith(f"/home/demo/{LAYER.relative_to(HOME_DIR)}/lib/python3.11/"), extra
    assert torch.startswith("/opt/venv/"), torch
    assert (LAYER / "lib/python3.11/site-packages/gpuprov_demo_extra").is_dir()
    # The notebook side: the Jupyter container reads the same layer.
    notebook = docker("exec", "gpuprov-demo-jupyter", "python", "-c", "import gpuprov_demo_extra")
    assert notebook.returncode == 0, notebook.stderr
    # Recreated on another image: its layer has another name, so the packages the user
    # installed under the old one stay on disk, off the path, and the summary lists them.
    LAYER.rename(OLD_LAYER)
    docker("rm", "--force", "gpuprov-demo-ssh")
    again = playbook()
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"installed for another image ({OLD_LAYER.name}): gpuprov_demo_extra" in again.stdout
    gone = demo_ssh(WHERE)
    assert gone.returncode != 0 and "No module named 'gpuprov_demo_extra'" in gone.stderr
    reinstalled = demo_ssh(
        f"pip-reinstall -q --no-cache-dir --no-index --find-links ~/{wheels.name} && {WHERE}"
    )
    assert reinstalled.returncode == 0, reinstalled.stdout + reinstalled.stderr
    assert f"/{LAYER.name}/" in reinstalled.stdout.split()[-2]
    assert (OLD_LAYER / "lib/python3.11/site-packages/gpuprov_demo_extra").is_dir()


def test_pip_refuses_to_replace_the_team_torch_and_says_what_to_do(site_run):
    refused = demo_ssh("pip install torch==2.0.0")
    assert refused.returncode == 1
    assert "torch 2.13.0+cpu is part of the team image" in refused.stderr, refused.stderr
    assert "ask for a new pin" in refused.stderr
    # The constraints come from the image's own resolved set, the torch family first.
    pins = demo_ssh("cat /opt/gpuprov/constraints.txt")
    assert "torch==2.13.0+cpu" in pins.stdout.splitlines(), pins.stdout[:2000]
    assert any(line.startswith("numpy==") for line in pins.stdout.splitlines())


def jupyter_get(path: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:28000{path}")
    request.add_header("Authorization", f"token {TOKEN.read_text().strip()}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_personal_environment_is_a_kernel_jupyter_lists(site_run):
    name = f"proj{os.getpid()}"
    kernel = HOME_DIR / ".local/share/jupyter/kernels" / f"gpuprov-{name}"
    try:
        created = demo_ssh(f"gpuprov-env create {name}")
        assert created.returncode == 0, created.stderr
        specs = jupyter_get("/api/kernelspecs")["kernelspecs"]
        assert f"gpuprov-{name}" in specs, sorted(specs)
        spec = specs[f"gpuprov-{name}"]["spec"]
        assert spec["env"]["GPUPROV_ENV"] == name and spec["argv"][0].startswith("/opt/venv/")
        # Over SSH: a shell with the environment on, reading commands from stdin here.
        script = "echo $GPUPROV_ENV; python -c 'import torch; print(torch.__file__)'"
        inside = demo_ssh(f"echo {shlex.quote(script)} | gpuprov-env shell {name}")
        assert inside.stdout.split()[:1] == [name], inside.stdout + inside.stderr
        assert inside.stdout.split()[1].startswith("/opt/venv/"), inside.stdout
    finally:
        shutil.rmtree(kernel, ignore_errors=True)
        shutil.rmtree(LAYER / "envs" / name, ignore_errors=True)


def test_jupyterlab_asks_for_no_news_and_checks_for_no_updates(site_run):
    get = jupyter_get
    assert get("/lab/api/news")["news"] == []
    assert get("/lab/api/update")["notification"] is None
    # overrides.json changes the defaults the settings schema gives every user.
    schema = get("/lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]
    defaults = {key: value.get("default") for key, value in schema["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults


def gpuprov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv/bin/gpuprov"), *args, "-i", "inventories/local", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def plain_pip(target: Path, wheels: Path, *requirements: str) -> None:
    """pip as a user who went around the guard would run it (--target, no constraints)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
         "--find-links", str(wheels), "--target", str(target), *requirements],
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_drift_audit_finds_a_second_torch_and_conda_plus_pip_and_status_shows_it(
    site_run, tmp_path
):
    """Planted in the demo's home as users do it: a venv holding another torch, and a
    conda prefix where pip wrote over conda's numpy."""
    make_wheel(tmp_path, "torch", "2.6.0+cpu")
    make_wheel(tmp_path, "numpy", "1.26.4")
    planted = HOME_DIR / f"gpuprov-drift-test-{os.getpid()}"  # the user's own files stay
    env, conda = planted / "env", planted / "miniconda3"
    try:
        venv = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)])
        assert venv.returncode == 0
        plain_pip(next(env.glob("lib/python*/site-packages")), tmp_path, "torch==2.6.0+cpu")
        conda_pkg(conda, "numpy", "2.2.6", "py311h5d046bc_0", dist="numpy")
        plain_pip(next(conda.glob("lib/python*/site-packages")), tmp_path, "numpy==1.26.4")
        audit = gpuprov("audit", "--workspaces")
        assert audit.returncode == 1, audit.stdout + audit.stderr
        rows = {row["workspace"]: row for row in json.loads(audit.stdout)["workspaces"]}
        for name in ("gpuprov-demo-jupyter", "gpuprov-demo-ssh"):
            found = {(f["kind"], f["package"]) for f in rows[name]["findings"]}
            assert {("replaced", "torch"), ("two-managers", "numpy")} <= found, rows[name]
        fleet = json.loads(gpuprov("status").stdout)
        assert "drift" in json.dumps(fleet), fleet
    finally:
        shutil.rmtree(planted, ignore_errors=True)
    clean = gpuprov("audit", "--workspaces")
    assert clean.returncode == 0, clean.stdout + clean.stderr
