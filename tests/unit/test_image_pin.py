"""The pin against a host's image: digests, image IDs, labels, disk space, the pin to commit."""

from __future__ import annotations

import pytest
import yaml
from support.pins import CPU

from gpuprov.core import image_build, image_pin
from gpuprov.core.audit import IMAGE_LABELS

DIGEST = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64
IMAGE_ID = "sha256:" + "1" * 64
PROMISES = CPU
PIN = {
    "reference": "10.212.0.1:5000/team/pytorch",
    "digest": DIGEST,
    "id": IMAGE_ID,
    "source": "pull",
    "promises": PROMISES,
}


def image(
    repo_digests=(f"10.212.0.1:5000/team/pytorch@{DIGEST}",), id_=IMAGE_ID, promises=PROMISES
):
    return {
        "Id": id_,
        "RepoDigests": list(repo_digests),
        "Size": 7_812_345_678,
        "Config": {
            "Labels": image_build.labels(promises, "pip"),
            "Env": ["PATH=/opt/venv/bin:/usr/bin", "CUDA_VERSION=12.6.3"],
        },
    }


def test_a_pulled_image_with_the_pinned_digest_and_labels_passes():
    assert image_pin.verify_image(PIN, image(), "registry") == []


def test_another_digest_of_the_same_repository_is_refused():
    problems = image_pin.verify_image(
        PIN, image([f"10.212.0.1:5000/team/pytorch@{OTHER}"]), "registry"
    )
    assert any(f"not the pinned {DIGEST}" in p and OTHER in p for p in problems)


def test_the_same_digest_under_another_repository_does_not_count():
    problems = image_pin.verify_image(PIN, image([f"other:5000/x@{DIGEST}"]), "registry")
    assert any("digest(s) none" in p for p in problems)


def test_a_wrong_image_id_is_refused_even_with_the_digest():
    problems = image_pin.verify_image(PIN, image(id_="sha256:" + "2" * 64), "registry")
    assert any("the pin says id" in p for p in problems)


def test_an_archive_load_is_verified_by_image_id_without_repo_digests():
    assert image_pin.verify_image(PIN, image(repo_digests=()), "archive") == []
    pin = {k: v for k, v in PIN.items() if k != "id"}
    assert any(
        "gpuprov_image.id is not set" in p for p in image_pin.verify_image(pin, image(), "archive")
    )


def test_labels_that_differ_from_the_pin_are_refused():
    other = {**PROMISES, "torch": "2.12.0+cpu"}
    problems = image_pin.verify_image(PIN, image(promises=other), "registry")
    assert problems == [
        "image label org.gpuprov.torch is '2.12.0+cpu' but the pin promises '2.13.0+cpu': "
        "rebuild the image from the pin with gpuprov's image template"
    ]


def test_a_missing_image_after_the_step_is_named():
    assert image_pin.verify_image(PIN, None, "registry") == [
        f"{PIN['reference']}@{DIGEST} is not on this host after the registry step"
    ]


def test_docker_hub_names_compare_as_docker_records_them():
    pin = {**PIN, "reference": "nvidia/cuda", "id": None}
    img = image([f"nvidia/cuda@{DIGEST}"])
    img["Config"]["Labels"] = image_build.labels(PROMISES)
    assert image_pin.verify_image(pin, img, "registry") == []
    img["RepoDigests"] = [f"docker.io/nvidia/cuda@{DIGEST}"]
    assert image_pin.verify_image(pin, img, "registry") == []


@pytest.mark.parametrize(
    ("text", "size"),
    [("30g", 30 * 1024**3), ("512m", 512 * 1024**2), ("1.5G", int(1.5 * 1024**3)), (7, 7)],
)
def test_sizes(text, size):
    assert image_pin.parse_size(text) == size


def test_a_bad_size_is_named():
    with pytest.raises(image_pin.PinError, match="'lots' is not a size"):
        image_pin.parse_size("lots")


def test_a_full_disk_is_a_clear_error_before_the_pull():
    needed, reckoned = image_pin.room_needed({"reference": "team/pytorch"}, 20 * 1024**3)
    message = image_pin.space_problem(
        2 * 1024**3, needed, "/var/lib/docker", "team/pytorch", reckoned
    )
    assert message == (
        "not enough disk space for team/pytorch: /var/lib/docker has 2.0 GiB free, 20.0 GiB "
        "needed (team_image_min_free; lower it if the image is smaller, or put the image's size "
        "in the pin (gpuprov image pin writes it)); free space there (docker image prune, docker "
        "builder prune)"
    )
    assert image_pin.space_problem(21 * 1024**3, needed, "/", "x", reckoned) is None


def test_a_pin_with_the_image_size_asks_for_that_room_when_it_is_above_the_floor():
    size = 16 * 1024**3
    needed, reckoned = image_pin.room_needed({"size": size}, 20 * 1024**3)
    assert needed == size + size // 2 + 1024**3
    assert reckoned == "the image unpacks to 16.0 GiB, and its layers download beside it"
    # team_image_min_free stays the floor: a small image asks for no less.
    assert image_pin.room_needed({"size": 1024**3}, 20 * 1024**3) == (
        20 * 1024**3,
        "team_image_min_free; the image itself needs 2.5 GiB",
    )
    # An archive's room comes from the archive, whatever the pin says.
    assert image_pin.room_needed({"size": size}, 0, 1024**3) == (
        3 * 1024**3,
        "the archive copied here and its unpacked layers",
    )
    assert image_pin.room_needed({"size": True}, 5)[0] == 5, "a boolean is no size"


def test_a_pin_without_a_digest_cannot_be_pulled():
    with pytest.raises(image_pin.PinError, match=r"gpuprov_image\.digest is None"):
        image_pin.pinned_reference({"reference": "r/x"})
    assert image_pin.pinned_reference(PIN) == f"10.212.0.1:5000/team/pytorch@{DIGEST}"


def test_the_pin_of_a_pushed_image_round_trips_through_yaml():
    pushed = image([f"10.212.0.1:5000/team/pytorch@{DIGEST}", f"other/x@{OTHER}"])
    pin = image_pin.pin_from_image(pushed, "10.212.0.1:5000/team/pytorch")
    assert pin == {
        "reference": "10.212.0.1:5000/team/pytorch",
        "digest": DIGEST,
        "id": IMAGE_ID,
        "source": "pull",
        "flavour": "cpu",
        "size": 7_812_345_678,
        "promises": PROMISES,
    }
    text = image_pin.render_pin(pin, "commit me")
    assert text.startswith("# commit me\ngpuprov_image:\n")
    assert yaml.safe_load(text) == {"gpuprov_image": pin}
    # The pushed image verifies against its own pin.
    assert image_pin.verify_image(pin, pushed, "registry") == []


def test_versions_stay_strings_in_the_pin_yaml():
    pin = {
        "reference": "r/x",
        "digest": DIGEST,
        "promises": {"python": "3.10", "cuda": "12.6", "torch": "2.7.1"},
    }
    loaded = yaml.safe_load(image_pin.render_pin(pin))["gpuprov_image"]["promises"]
    assert loaded == {"python": "3.10", "cuda": "12.6", "torch": "2.7.1"}


def test_an_image_not_built_by_gpuprov_has_no_pin():
    plain = {"Id": IMAGE_ID, "RepoDigests": [f"r/x@{DIGEST}"], "Config": {"Labels": {}}}
    with pytest.raises(image_pin.PinError, match="not built by gpuprov"):
        image_pin.pin_from_image(plain, "r/x:1")
    with pytest.raises(image_pin.PinError, match="push it first"):
        image_pin.pin_from_image({**plain, "RepoDigests": []}, "r/x")


def test_audit_commands_feed_the_inspector_on_stdin_without_network():
    commands = image_pin.audit_commands("img@" + DIGEST, ("docker", "-H", "unix:///d.sock"))
    assert commands["run"] == [
        "docker",
        "-H",
        "unix:///d.sock",
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--entrypoint",
        "python3",
        "img@" + DIGEST,
        "-",
    ]
    assert commands["inspect"][-2:] == ["inspect", "img@" + DIGEST]


def test_requirements_carry_the_cuda_build():
    promises = {"torch": "2.7.1", "torchvision": "0.22.1", "torchaudio": "2.7.1", "cuda": "12.6"}
    assert image_build.requirements(promises, ["numpy==2.3.5"]) == [
        "torch==2.7.1+cu126",
        "torchvision==0.22.1+cu126",
        "torchaudio==2.7.1+cu126",
        "numpy==2.3.5",
    ]
    assert image_build.requirements({"torch": "2.13.0", "cuda": "none"}) == ["torch==2.13.0+cpu"]
    assert (
        image_build.requirements(promises, package_manager="conda")[0] == "pytorch=2.7.1=cuda126*"
    )
    assert image_build.torch_index(promises) == "https://download.pytorch.org/whl/cu126"


def test_build_rules_refuse_floating_bases_and_mixed_channels():
    assert "not pinned by digest" in image_build.check_base(
        "nvidia/cuda:12.6.3-base-ubuntu24.04", False
    )
    assert image_build.check_base(f"nvidia/cuda:12.6.3-base-ubuntu24.04@{DIGEST}", False) is None
    assert image_build.check_base("localhost/gpuprov/debian:bookworm", True) is None
    assert "conda-forge only" in image_build.check_package_manager(
        "conda", ["conda-forge", "defaults"]
    )
    assert image_build.check_package_manager("pip", []) is None
    assert "use one of" in image_build.check_package_manager("uv", [])


def test_build_labels_name_the_inputs_and_unknown_inputs_are_refused():
    labels = image_build.labels(PROMISES, "pip", {"base": "b@" + DIGEST, "base_digest": DIGEST})
    assert labels["org.opencontainers.image.base.digest"] == DIGEST
    assert labels[IMAGE_LABELS["torch"]] == "2.13.0+cpu"
    with pytest.raises(image_build.BuildInputError):
        image_build.labels(PROMISES, "pip", {"colour": "blue"})


def test_run_reference_is_what_the_image_play_left_on_the_host():
    digest, image_id = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    pin = {"reference": "registry.test:5000/team/pytorch", "digest": digest, "id": image_id}
    assert image_pin.run_reference(pin) == f"registry.test:5000/team/pytorch@{digest}"
    assert image_pin.run_reference(pin, "registry") == image_pin.pulled_reference(pin)
    # An archive load has the image by ID only.
    assert image_pin.run_reference(pin, "archive") == image_id
    assert image_pin.run_reference({"reference": "registry.test:5000/team/pytorch"}) == ""
    assert image_pin.run_reference({"reference": "r/x", "source": "build"}, "archive") == ""


def test_pulled_reference_is_reference_at_digest_or_nothing_for_a_build():
    digest = "sha256:" + "ab" * 32
    pin = {"reference": "registry.test:5000/team/pytorch", "digest": digest}
    assert image_pin.pulled_reference(pin) == f"registry.test:5000/team/pytorch@{digest}"
    assert image_pin.pulled_reference({"reference": "registry.test:5000/team/pytorch"}) == ""


def test_pull_failure_says_what_each_error_means_and_names_the_registry():
    digest = "sha256:" + "ab" * 32
    pin = {"reference": "registry.test:5000/team/pytorch", "digest": digest}
    said = image_pin.pull_failure(pin, "manifest unknown")
    assert said.startswith(f"could not pull registry.test:5000/team/pytorch@{digest}: manifest")
    assert "cannot reach registry.test:5000 (set team_image_transfer: archive" in said
    assert "unknown error" in image_pin.pull_failure(pin, "")


def test_archive_source_is_the_chosen_host_else_the_first_that_pulls():
    transfers = {"gpu1": "archive", "gpu2": "registry", "gpu3": "registry"}
    assert image_pin.archive_source("", transfers) == "gpu2"
    assert image_pin.archive_source("builder", transfers) == "builder"
    assert image_pin.archive_source("", {"gpu1": "archive"}) == ""


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({}, ""),
        ({"base_on_host": False}, "team_image_base_local is true but localhost/base is not on"),
        ({"local": False}, "is not pinned by digest"),
        ({"package_manager": "mamba"}, "team_image_package_manager is 'mamba'"),
        ({"package_manager": "conda"}, "team_image_micromamba_sha256 is empty"),
        ({"package_manager": "conda", "micromamba_sha256": "ab" * 32}, ""),
    ],
)
def test_build_problem_says_why_a_build_may_not_start(given, says):
    inputs = {
        "base": "localhost/base",
        "local": True,
        "base_on_host": True,
        "package_manager": "pip",
        "conda_channels": ["conda-forge"],
        "micromamba_sha256": "",
    }
    said = image_build.build_problem(**{**inputs, **given})
    assert (said == "") if says == "" else (says in said), said
