"""The CUDA an image declares: CUDA_VERSION and NVIDIA_REQUIRE_CUDA from Config.Env."""

from __future__ import annotations

import dataclasses

import pytest
from test_verify import by_name, healthy_h100

from gpuprov.core.cuda_env import ImageCuda
from gpuprov.core.cuda_env import image_cuda as _image_cuda
from gpuprov.core.image_pin import image_environment
from gpuprov.core.verify import HostExpectations, ImagePin, Status, verify_host

# The environment of nvidia/cuda:12.4.1-runtime-ubuntu22.04 (docker image inspect).
CUDA_124_ENV = [
    "PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin",
    "NVARCH=x86_64",
    "NVIDIA_REQUIRE_CUDA=cuda>=12.4 brand=tesla,driver>=470,driver<471 "
    "brand=unknown,driver>=470,driver<471 brand=nvidia,driver>=470,driver<471",
    "NV_CUDA_CUDART_VERSION=12.4.127-1",
    "CUDA_VERSION=12.4.1",
    "NVIDIA_VISIBLE_DEVICES=all",
    "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
]


def image_cuda(env: list[str]) -> ImageCuda | None:
    """What the gate sees of an image whose Config.Env is `env`."""
    return _image_cuda(image_environment({"Config": {"Env": env}}))


def test_reads_both_variables_of_a_cuda_image() -> None:
    declared = image_cuda(CUDA_124_ENV)
    assert declared == ImageCuda(version="12.4.1", required="12.4", driver_floors=("470",))
    assert declared.cuda == "12.4.1"
    assert declared.source == "CUDA_VERSION=12.4.1"
    assert declared.requirement() == (
        "NVIDIA_REQUIRE_CUDA cuda>=12.4 (or, through forward compatibility, driver>=470)"
    )


def test_require_alone_gives_its_floor() -> None:
    declared = image_cuda(["NVIDIA_REQUIRE_CUDA=brand=tesla,driver>=535 cuda>=12.8"])
    assert declared == ImageCuda(version=None, required="12.8", driver_floors=("535",))
    assert declared.source == "NVIDIA_REQUIRE_CUDA cuda>=12.8"
    assert declared.requirement().startswith("NVIDIA_REQUIRE_CUDA cuda>=12.8 (or")


@pytest.mark.parametrize(
    "env",
    [
        [],
        ["PATH=/usr/bin", "LANG=C.UTF-8"],
        ["CUDA_VERSION=", "NVIDIA_REQUIRE_CUDA="],
        ["CUDA_VERSION=twelve", "NVIDIA_REQUIRE_CUDA=cuda>=x.y"],
        ["NVIDIA_REQUIRE_CUDA=mycuda>=12.4"],
    ],
)
def test_an_image_that_declares_no_cuda(env: list[str]) -> None:
    assert image_cuda(env) is None


PIN_124 = ImagePin(cuda="12.4", torch="2.5.1", cuda_build="cu124")


def test_the_driver_is_checked_against_what_the_image_declares() -> None:
    pin = dataclasses.replace(PIN_124, declared=image_cuda(CUDA_124_ENV))
    check = by_name(verify_host(healthy_h100(), HostExpectations(), pin))["driver vs image CUDA"]
    assert check.status is Status.OK
    assert check.reason == (
        "driver 590.48.01 >= 550.54.15 needed by CUDA 12.4.1 in the team image "
        "(CUDA_VERSION=12.4.1)"
    )


def test_a_pin_promising_another_cuda_fails_and_names_both() -> None:
    declared = ImageCuda(version="12.8.1", required="12.8")
    pin = dataclasses.replace(PIN_124, declared=declared)
    check = by_name(verify_host(healthy_h100(), HostExpectations(), pin))["driver vs image CUDA"]
    assert check.status is Status.FAIL
    assert check.reason.startswith(
        "the image declares CUDA_VERSION=12.8.1 but gpuprov_image.promises.cuda is 12.4: "
        "re-pin the image (gpuprov image pin)"
    )
    assert "needed by CUDA 12.8.1 in the team image (CUDA_VERSION=12.8.1)" in check.reason


def test_a_cpu_pin_on_a_cuda_image_fails() -> None:
    pin = ImagePin(cuda=None, torch="2.5.1", cuda_build=None, declared=image_cuda(CUDA_124_ENV))
    check = by_name(verify_host(healthy_h100(), HostExpectations(), pin))["driver vs image CUDA"]
    assert check.status is Status.FAIL
    assert "gpuprov_image.promises.cuda is none" in check.reason


def test_an_old_driver_fails_against_the_declared_cuda_even_when_the_pin_agrees() -> None:
    facts = dataclasses.replace(healthy_h100(), driver_version="535.104.05", cuda_version="12.2")
    pin = dataclasses.replace(PIN_124, declared=image_cuda(CUDA_124_ENV))
    check = by_name(verify_host(facts, HostExpectations(), pin))["driver vs image CUDA"]
    assert check.status is Status.FAIL
    assert check.reason.startswith(
        "driver 535.104.05 < 550.54.15 needed by CUDA 12.4.1 in the team image "
        "(CUDA_VERSION=12.4.1)"
    )
