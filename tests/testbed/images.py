"""Images built offline: a Debian base from debootstrap, and the SSH test-host image.

The engine cannot pull from any public registry, so the base comes from
`debootstrap` against the Debian mirror apt already uses, and the host image's
packages are installed in a chroot (containers built by the private engine have
no route out). Both are cached in the persistent engine, labelled with a key over
their inputs, so a warm run skips debootstrap and apt entirely.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .engine import Engine
from .paths import ASSETS_DIR, cache_dir
from .procs import CommandError, run

SUITE = "bookworm"
BASE_IMAGE = f"gpuprov-testbed/base:{SUITE}"
HOST_ROOT_IMAGE = f"gpuprov-testbed/hostroot:{SUITE}"
HOST_IMAGE_REPO = "gpuprov-testbed/host"
KEY_LABEL = "gpuprov.testbed.key"

# What images built FROM the base need: Python with venv/pip for offline wheels
# (Jupyter, torch), requests for Ansible's docker modules, sshd for SSH workspaces,
# tini as init, curl for health checks, nss_wrapper to name the user's uid in workspaces.
BASE_PACKAGES = (
    "ca-certificates",
    "curl",
    "iproute2",
    "libnss-wrapper",
    "openssh-server",
    "procps",
    "python3",
    "python3-pip",
    "python3-requests",
    "python3-venv",
    "sudo",
    "tini",
)
# A GPU server: its own Docker engine plus what Ansible's service/iptables handling touches.
HOST_PACKAGES = ("containerd", "docker.io", "iptables", "kmod", "runc")

_RECIPE_VERSION = "1"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses: the only place packages can come from."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for source in sources:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        for match in re.finditer(r"(https?://\S+/debian)/?(?=\s)", text):
            return match.group(1)
    return "http://deb.debian.org/debian"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _label(engine: Engine, image: str) -> str | None:
    proc = engine.docker(
        "image", "inspect", "-f", f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}', image, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_base_images(engine: Engine, log: list[str]) -> str:
    """Make sure base and host-root images exist for the current package lists.

    Returns the base image reference, the one other tests build FROM.
    """
    mirror = debian_mirror()
    key = _key(_RECIPE_VERSION, SUITE, mirror, BASE_PACKAGES, HOST_PACKAGES)
    if _label(engine, BASE_IMAGE) == key and _label(engine, HOST_ROOT_IMAGE) == key:
        return BASE_IMAGE
    # One root per process: beds in other slots may be rebuilding at the same time.
    root = cache_dir() / f"rootfs-{os.getpid()}"
    _remove_root(root)
    try:
        started = time.monotonic()
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(root),
                mirror,
            ],
            timeout=1200,
        )
        _slim(root)
        _import(engine, root, BASE_IMAGE, key)
        log.append(f"debootstrap + base import: {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        _chroot_install(root, HOST_PACKAGES)
        _slim(root)
        _import(engine, root, HOST_ROOT_IMAGE, key)
        log.append(f"host packages + import: {time.monotonic() - started:.0f} s")
    finally:
        _remove_root(root)
    return BASE_IMAGE


def _chroot_install(root: Path, packages: tuple[str, ...]) -> None:
    policy = root / "usr/sbin/policy-rc.d"
    # Exit 101 tells maintainer scripts not to start services (dockerd, sshd) in the chroot.
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    proc_dir = root / "proc"
    run(["mount", "-t", "proc", "proc", str(proc_dir)])
    try:
        env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        run(["chroot", str(root), "apt-get", "update"], env=env, timeout=600)
        run(
            ["chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends", *packages],
            env=env,
            timeout=1200,
        )
    finally:
        run(["umount", str(proc_dir)])
        policy.unlink()


def _slim(root: Path) -> None:
    """Drop apt caches and the host keys debootstrap generated: every host makes its own."""
    run(["chroot", str(root), "apt-get", "clean"])
    for pattern in ("var/lib/apt/lists/*", "etc/ssh/ssh_host_*"):
        for item in root.glob(pattern):
            if item.is_file():
                item.unlink()


def _import(engine: Engine, root: Path, image: str, key: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    try:
        proc = subprocess.run(
            [
                "docker",
                "import",
                "--change",
                f"LABEL {KEY_LABEL}={key}",
                "--change",
                'CMD ["/bin/bash"]',
                "-",
                image,
            ],
            stdin=tar.stdout,
            env={**os.environ, **engine.env()},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if tar.stdout:
            tar.stdout.close()
        tar.wait()
    if proc.returncode != 0 or tar.returncode != 0:
        raise CommandError(f"docker import {image} failed: {proc.stderr}")


def _remove_root(root: Path) -> None:
    """Remove a half-built root, unmounting /proc first so rm never walks into it."""
    proc_dir = root / "proc"
    if proc_dir.is_dir() and run(["mountpoint", "-q", str(proc_dir)], check=False).returncode == 0:
        run(["umount", "-l", str(proc_dir)])
    shutil.rmtree(root, ignore_errors=True)


def ensure_host_image(engine: Engine) -> str:
    """Build the SSH test-host image from the host root plus the assets, if they changed."""
    context = ASSETS_DIR / "host"
    digest = hashlib.sha256(
        engine.docker("image", "inspect", "-f", "{{.Id}}", HOST_ROOT_IMAGE).stdout.strip().encode()
    )
    for item in sorted(context.rglob("*")):
        if item.is_file():
            digest.update(str(item.relative_to(context)).encode())
            digest.update(item.read_bytes())
    image = f"{HOST_IMAGE_REPO}:{digest.hexdigest()[:16]}"
    if engine.docker("image", "inspect", image, check=False).returncode != 0:
        engine.docker(
            "build", "-q", "--build-arg", f"HOST_ROOT={HOST_ROOT_IMAGE}", "-t", image, str(context)
        )
    return image


SHELL_IMAGE = "gpuprov-testbed/shell:latest"
# dash and the loader/libc it needs: enough for `sh -c` in containers, pushed in a blink.
_SHELL_FILES = {
    "bin/sh": Path("/bin/dash"),
    "lib/x86_64-linux-gnu/libc.so.6": Path("/lib/x86_64-linux-gnu/libc.so.6"),
    "lib64/ld-linux-x86-64.so.2": Path("/lib64/ld-linux-x86-64.so.2"),
}


def ensure_shell_image(engine: Engine, context: Path) -> str:
    """Build the tiny shell image from this machine's dash and libc, unless it exists."""
    if engine.docker("image", "inspect", SHELL_IMAGE, check=False).returncode == 0:
        return SHELL_IMAGE
    for target, source in _SHELL_FILES.items():
        (context / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source.resolve(), context / target)
    (context / "Dockerfile").write_text('FROM scratch\nCOPY . /\nCMD ["/bin/sh"]\n')
    engine.docker("build", "-q", "-t", SHELL_IMAGE, str(context))
    return SHELL_IMAGE
