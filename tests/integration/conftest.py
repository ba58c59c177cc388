"""Integration layer: a session-wide test bed of real Docker, registry and SSH hosts.

Skipped, with one reason, only where it cannot run at all (not root, missing
tools); with CI=true it never skips: the `testbed` fixture fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed import L40S_CAPTURE, HostSpec, TestBed

HERE = Path(__file__).resolve().parent
REQUIRED_TOOLS = (
    "dockerd",
    "docker",
    "docker-registry",
    "debootstrap",
    "nsenter",
    "nc",
    "ssh",
    "ssh-keygen",
    "ip",
)
TIMINGS = pytest.StashKey[dict[str, float]]()


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, dockerd, debootstrap)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        packages = "scripts/testbed-apt-packages.txt"
        return f"missing {', '.join(missing)} (apt-get install the packages in {packages})"
    return None


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_report_header(config: pytest.Config) -> str | None:
    reason = _unavailable()
    if reason and not _on_ci():
        return f"integration tests skipped: {reason}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _unavailable()
    for item in items:
        if HERE not in Path(item.path).parents:
            continue
        item.add_marker(pytest.mark.integration)
        if reason and not _on_ci():
            item.add_marker(pytest.mark.skip(reason=f"integration test bed unavailable: {reason}"))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    timings = config.stash.get(TIMINGS, None)
    if timings:
        figures = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        terminalreporter.write_line(f"test bed start: {figures}")


@pytest.fixture(scope="session")
def testbed(request: pytest.FixtureRequest) -> Iterator[TestBed]:
    """Three SSH hosts: a healthy H100, an old driver, and one without the toolkit."""
    reason = _unavailable()
    if reason:
        pytest.fail(f"integration test bed cannot run (CI=true never skips): {reason}")
    bed = TestBed(
        [
            HostSpec("h100", toolkit_version="1.19.1"),
            HostSpec(
                "oldgpu", capture=L40S_CAPTURE, driver_version="535.104.05", cuda_version="12.2"
            ),
            HostSpec("notoolkit", toolkit_version=None),
        ]
    )
    bed.start()
    request.config.stash[TIMINGS] = bed.timings
    try:
        yield bed
    finally:
        bed.stop()
        leftovers = bed.leftovers()
        if leftovers:
            pytest.fail("test bed left things behind:\n" + "\n".join(leftovers), pytrace=False)


@pytest.fixture(scope="session")
def docker_env(testbed: TestBed) -> dict[str, str]:
    """Environment that points `docker` at the bed's private outer engine."""
    return testbed.docker_env()


@pytest.fixture(scope="session")
def registry(testbed: TestBed) -> str:
    """The registry as ADDR:PORT, as hosts see it."""
    return testbed.registry


@pytest.fixture(scope="session")
def base_image(testbed: TestBed) -> str:
    """Debian 12 base image in the outer engine, for test images to build FROM."""
    return testbed.base_image


@pytest.fixture(scope="session")
def shell_image_ref(testbed: TestBed) -> str:
    """The tiny shell image pushed to the registry: `REGISTRY/gpuprov-test/shell@sha256:...`."""
    return testbed.push_image(testbed.shell_image(), "gpuprov-test/shell:1")


@pytest.fixture(scope="session")
def inventory(testbed: TestBed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Ansible YAML inventory of the bed's hosts."""
    return testbed.write_inventory(tmp_path_factory.mktemp("inventory") / "hosts.yml")
