import re

import pytest

from gpuprov.core.torch_matrix import (
    RELEASES,
    build_for_cuda_version,
    cuda_build_of,
    cuda_build_of_conda,
    cuda_version_of_build,
    minor_of,
    release_for,
)

# Rows of /work/shared/facts/gpu-stack.md, "PyTorch releases and their CUDA builds".
GPU_STACK_FACTS = [
    ("2.4", ("cu118", "cu121"), ("cu124",), "0.19", "2.4"),
    ("2.5", ("cu118", "cu121", "cu124"), (), "0.20", "2.5"),
    ("2.6", ("cu118", "cu124"), ("cu126",), "0.21", "2.6"),
    ("2.7", ("cu118", "cu126"), ("cu128",), "0.22", "2.7"),
    ("2.8", ("cu126", "cu128"), ("cu129",), "0.23", "2.8"),
    ("2.9", ("cu126", "cu128"), ("cu130",), "0.24", "2.9"),
]


@pytest.mark.parametrize(("torch", "stable", "experimental", "vision", "audio"), GPU_STACK_FACTS)
def test_table_agrees_with_the_collected_facts(torch, stable, experimental, vision, audio):
    release = release_for(f"{torch}.0")
    assert release is not None
    assert tuple(b.tag for b in release.builds if b.stable) == stable
    assert tuple(b.tag for b in release.builds if not b.stable) == experimental
    assert (release.torchvision, release.torchaudio) == (vision, audio)


@pytest.mark.parametrize(
    ("torch", "tag", "cudnn"),
    [
        ("2.6.0", "cu126", "9.5.1.17"),
        ("2.6.0", "cu124", "9.1.0.70"),
        ("2.7.1", "cu128", "9.7.1.26"),
        ("2.9.0", "cu130", "9.13.0.50"),
        ("2.10.0", "cu130", "9.15.1.9"),
        ("2.11.0", "cu128", "9.17.1.4"),
    ],
)
def test_bundled_cudnn_per_build(torch, tag, cudnn):
    release = release_for(torch)
    assert release is not None
    build = release.build(tag)
    assert build is not None and build.cudnn == cudnn


def test_every_row_is_sourced_ordered_and_well_formed():
    minors = [tuple(int(p) for p in r.torch.split(".")) for r in RELEASES]
    assert minors == sorted(minors) and len(set(minors)) == len(minors)
    for release in RELEASES:
        from_release_md = "RELEASE.md" in release.source
        assert from_release_md or "download.pytorch.org" in release.source, release.torch
        assert any(b.stable for b in release.builds), release.torch
        for build in release.builds:
            assert re.fullmatch(r"cu\d{3}", build.tag)
            # a cuDNN is only ever copied from RELEASE.md, never guessed
            if from_release_md:
                assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", build.cudnn)
            else:
                assert build.cudnn is None


@pytest.mark.parametrize(
    ("version", "minor"),
    [("2.7.1+cu126", "2.7"), ("2.10.0", "2.10"), ("0.22.1", "0.22"), ("2.11.0a0", "2.11")],
)
def test_minor_of(version, minor):
    assert minor_of(version) == minor


@pytest.mark.parametrize("garbage", ["", "torch", "2", "latest"])
def test_minor_of_rejects_what_is_not_a_version(garbage):
    with pytest.raises(ValueError, match="is not a version"):
        minor_of(garbage)


def test_release_for_unknown_or_garbage_is_none():
    assert release_for("1.13.1") is None
    assert release_for("nonsense") is None
    assert release_for("2.7.1+cu126").torchvision == "0.22"


@pytest.mark.parametrize(
    ("version", "tag"),
    [
        ("2.7.1+cu126", "cu126"),
        ("2.9.0+cu130", "cu130"),
        ("2.13.0+cpu", "cpu"),
        ("2.7.1", None),
        ("2.7.1+rocm6.3", None),
        ("1.0+local", None),
    ],
)
def test_cuda_build_of(version, tag):
    assert cuda_build_of(version) == tag


@pytest.mark.parametrize(
    ("build", "tag"),
    [
        ("py3.11_cuda12.4_cudnn9.1.0_0", "cu124"),
        ("py311_cu124", "cu124"),
        ("cuda126_generic_py311_h5a2c0f3_200", "cu126"),
        ("cuda120_py311h1a2b3c4_300", "cu120"),
        ("cpu_generic_py311_h0d1e2f3_0", "cpu"),
        ("py3.11_cpu_0", "cpu"),
        ("py311h64a7726_0", None),
        ("h4bc722e_0", None),
    ],
)
def test_cuda_build_of_conda(build, tag):
    assert cuda_build_of_conda(build) == tag


@pytest.mark.parametrize(
    ("tag", "cuda"), [("cu118", "11.8"), ("cu126", "12.6"), ("cu130", "13.0"), ("cpu", None)]
)
def test_cuda_version_of_build(tag, cuda):
    assert cuda_version_of_build(tag) == cuda


def test_cuda_version_of_build_rejects_other_tags():
    with pytest.raises(ValueError, match="not a CUDA build tag"):
        cuda_version_of_build("rocm6.3")


@pytest.mark.parametrize(
    ("cuda", "tag"), [("12.6", "cu126"), ("12.6.3", "cu126"), ("13.0", "cu130")]
)
def test_build_for_cuda_version(cuda, tag):
    assert build_for_cuda_version(cuda) == tag


def test_build_for_cuda_version_rejects_garbage():
    with pytest.raises(ValueError, match="not a CUDA version"):
        build_for_cuda_version("none")
