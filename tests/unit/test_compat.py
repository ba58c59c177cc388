"""Compatibility tables and the questions asked of them."""

from __future__ import annotations

import pytest

from gpuprov.core.compat import (
    MIN_DRIVER_FOR_CUDA,
    TABLES_UPDATED,
    TOOLKIT_ADVISORIES,
    TOOLKIT_MIN_SAFE,
    TORCH_CUDA_BUILDS,
    WHEEL_ARCH_LISTS,
    ArchSupport,
    CompatError,
    Support,
    cuda_build_supports_cc,
    driver_supports_cuda,
    min_driver_for_cuda,
    newest_build_for_driver,
    toolkit_findings,
    wheel_arch_list,
)
from gpuprov.core.versions import Version, VersionError, major_minor, parse_version


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("535.104.05", "535.54.03", 1),
        ("570.26", "570.26.0", 0),
        ("570.26", "570.124.06", -1),
        ("12.10", "12.9", 1),
        ("v1.17.8", "1.17.8", 0),
        ("1.17.4", "1.17.8", -1),
        ("580", "580.65.06", -1),
    ],
)
def test_version_ordering(a, b, expected):
    va, vb = parse_version(a), parse_version(b)
    assert (va > vb) - (va < vb) == expected


def test_version_keeps_its_text_and_hashes_like_equal_versions():
    assert str(parse_version("535.104.05")) == "535.104.05"
    assert hash(parse_version("570.26")) == hash(parse_version("570.26.0"))
    assert major_minor("12.6.3") == parse_version("12.6")
    assert isinstance(parse_version(parse_version("1.2")), Version)


@pytest.mark.parametrize("bad", ["", "abc", "1..2", "12.4-rc1", "x1"])
def test_version_rejects_non_versions(bad):
    with pytest.raises(VersionError, match="not a dotted version"):
        parse_version(bad)


# --- the driver table ------------------------------------------------------------


@pytest.mark.parametrize("row", MIN_DRIVER_FOR_CUDA, ids=lambda r: f"{r.cuda}u{r.update}")
def test_each_driver_row_is_its_own_boundary(row):
    toolkit = f"{row.cuda}.{row.update}"
    minimum = parse_version(row.driver)
    assert min_driver_for_cuda(toolkit) == minimum
    assert driver_supports_cuda(row.driver, toolkit).status is Support.OK
    below = ".".join(str(p) for p in (*minimum.parts[:-1], minimum.parts[-1] - 1))
    assert driver_supports_cuda(below, toolkit).status is not Support.OK
    above = ".".join(str(p) for p in (*minimum.parts[:-1], minimum.parts[-1] + 1))
    assert driver_supports_cuda(above, toolkit).status is Support.OK


def test_driver_table_minimums_rise_with_cuda():
    ordered = sorted(MIN_DRIVER_FOR_CUDA, key=lambda r: (parse_version(r.cuda), r.update))
    drivers = [parse_version(r.driver) for r in ordered]
    assert drivers == sorted(drivers)


@pytest.mark.parametrize(
    ("cuda", "driver"),
    [
        ("12.4", "550.54.14"),  # X.Y means the GA release
        ("12.4.0", "550.54.14"),
        ("12.4.1", "550.54.15"),
        ("12.6.2", "560.35.03"),
        ("12.6.4", "560.35.05"),  # update not listed: newest listed one below it
        ("13.3.1", "610.43.02"),
        ("12.6.3", "560.35.05"),
        ("13.0.2", "580.95.05"),
    ],
)
def test_min_driver_for_cuda(cuda, driver):
    assert min_driver_for_cuda(cuda) == parse_version(driver)


@pytest.mark.parametrize("cuda", ["12.7", "10.2", "13.4"])
def test_unknown_cuda_is_an_error_naming_the_source(cuda):
    with pytest.raises(CompatError, match="add its row from CUDA Toolkit Release Notes"):
        min_driver_for_cuda(cuda)


def test_bad_cuda_string_is_a_compat_error():
    with pytest.raises(CompatError, match="CUDA version 'twelve'"):
        min_driver_for_cuda("twelve")


# --- driver vs CUDA ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "cuda", "status", "suggested"),
    [
        ("535.104.05", "12.4", Support.MINOR_VERSION_COMPAT, "cu121"),
        ("525.60.13", "12.8", Support.MINOR_VERSION_COMPAT, "cu118"),
        ("525.60.12", "12.0", Support.TOO_OLD, "cu118"),
        ("470.239.06", "12.1", Support.TOO_OLD, None),
        ("520.61.05", "12.1", Support.TOO_OLD, "cu118"),
        ("450.80.02", "11.8", Support.MINOR_VERSION_COMPAT, None),
        ("450.80.01", "11.8", Support.TOO_OLD, None),
        ("575.57.08", "13.0", Support.TOO_OLD, "cu129"),
        ("580.65.06", "13.0", Support.OK, None),
        ("580.0", "13.0.2", Support.MINOR_VERSION_COMPAT, "cu129"),
        ("590.48.01", "12.6", Support.OK, None),
    ],
)
def test_driver_supports_cuda(driver, cuda, status, suggested):
    verdict = driver_supports_cuda(driver, cuda)
    assert verdict.status is status
    assert verdict.suggested_build == suggested
    assert verdict.ok is (status is Support.OK)


def test_minor_version_compat_message_names_versions_limits_and_remedy():
    verdict = driver_supports_cuda("535.104.05", "12.4")
    assert verdict.required == "550.54.14"
    assert verdict.message.startswith("driver 535.104.05 < 550.54.14 needed by CUDA 12.4")
    assert "minor-version compatibility" in verdict.message
    assert "525.60.13" in verdict.message
    assert "PTX" in verdict.message
    assert verdict.message.endswith("upgrade the driver or pin an image built for cu121")


def test_too_old_message_names_the_floor():
    verdict = driver_supports_cuda("470.239.06", "12.1")
    assert "below the CUDA 12.x minor-version-compatibility floor 525.60.13" in verdict.message
    assert "no PyTorch CUDA build" in verdict.message


def test_every_driver_row_names_its_source():
    assert all(row.source.url.startswith("https://") for row in MIN_DRIVER_FOR_CUDA)
    row = next(r for r in MIN_DRIVER_FOR_CUDA if (r.cuda, r.update) == ("13.3", 0))
    assert row.source.url.endswith("/13.3.0/local_installers/cuda_13.3.0_610.43.02_linux.run")


def test_newer_cuda_than_the_table_is_answered_by_the_drivers_cuda_version():
    verdict = driver_supports_cuda("615.71.09", "13.4", driver_cuda="13.4")
    assert verdict.ok
    assert verdict.beyond.startswith(
        f"CUDA 13.4 is beyond gpuprov's table (updated {TABLES_UPDATED})"
    )
    assert "the CUDA version the driver reports" in verdict.beyond
    assert driver_supports_cuda("615.71.09", "13.4.1", driver_cuda="13.4").ok
    verdict = driver_supports_cuda("610.57.04", "13.4", driver_cuda="13.3")
    assert verdict.status is Support.MINOR_VERSION_COMPAT
    assert "reports CUDA 13.3 < 13.4" in verdict.message


def test_newer_cuda_without_the_drivers_cuda_version_is_unknown_not_an_error():
    verdict = driver_supports_cuda("615.71.09", "13.4")
    assert verdict.status is Support.UNKNOWN
    assert not verdict.ok
    assert "CUDA 13.4 is beyond gpuprov's table" in verdict.message
    assert "'CUDA UMD Version'" in verdict.message


def test_a_driver_branch_newer_than_the_table_passes_with_a_note():
    verdict = driver_supports_cuda("617.14", "12.6")
    assert verdict.ok
    assert verdict.beyond.startswith("driver 617.14 is beyond gpuprov's table")
    assert "newest branch is 610" in verdict.beyond
    assert driver_supports_cuda("610.57.04", "13.3").beyond is None


def test_the_610_branch_runs_cuda_13_3():
    assert driver_supports_cuda("610.57.04", "13.3.1").ok
    assert driver_supports_cuda("595.71.05", "13.3").status is Support.MINOR_VERSION_COMPAT


@pytest.mark.parametrize(
    ("driver", "build"),
    [
        ("535.104.05", "cu121"),
        ("550.54.14", "cu124"),
        ("560.28.03", "cu126"),
        ("570.26", "cu128"),
        ("580.65.06", "cu130"),
        ("595.45.04", "cu132"),
        ("610.57.04", "cu132"),
        ("520.61.04", None),
    ],
)
def test_newest_build_for_driver(driver, build):
    assert newest_build_for_driver(driver) == build


# --- wheel architecture lists ----------------------------------------------------------


def test_every_arch_list_names_its_source_and_only_cu132_lacks_one():
    assert set(TORCH_CUDA_BUILDS) - {row.build for row in WHEEL_ARCH_LISTS} == {"cu132"}
    assert all(row.source.url.startswith("https://") for row in WHEEL_ARCH_LISTS)


def test_a_build_without_an_arch_list_is_unknown_and_says_how_to_check():
    verdict = cuda_build_supports_cc("cu132", "9.0", "2.13.0")
    assert verdict.status is ArchSupport.UNKNOWN
    assert verdict.supported
    assert "arch list" in verdict.message or "architecture list" in verdict.message
    assert "torch.cuda.get_arch_list()" in verdict.message


def test_a_torch_newer_than_the_table_uses_the_newest_arch_list_with_a_note():
    verdict = cuda_build_supports_cc("cu130", "9.0", "2.99.0")
    assert verdict.status is ArchSupport.NATIVE
    assert verdict.beyond.startswith("torch 2.99.0 is beyond gpuprov's table")
    assert cuda_build_supports_cc("cu130", "9.0", "2.9.0").beyond is None


@pytest.mark.parametrize(
    ("build", "cc", "torch", "status"),
    [
        ("cu126", "9.0", "2.7.1", ArchSupport.NATIVE),  # H100, H200
        ("cu126", "8.9", "2.7.1", ArchSupport.NATIVE),  # L40S / RTX 4080 run sm_86 SASS
        ("cu126", "6.1", "2.7.1", ArchSupport.NATIVE),  # GTX 1080 runs sm_60 SASS
        ("cu126", "12.0", "2.7.1", ArchSupport.UNSUPPORTED),  # Blackwell needs cu128+
        ("cu126", "10.0", "2.7.1", ArchSupport.UNSUPPORTED),
        ("cu124", "5.2", "2.5.1", ArchSupport.NATIVE),
        ("cu118", "3.7", "2.4.0", ArchSupport.NATIVE),  # K80
        ("cu121", "3.7", "2.4.0", ArchSupport.UNSUPPORTED),
        ("cu128", "12.0", "2.7.1", ArchSupport.NATIVE),
        ("cu128", "10.0", "2.8.0", ArchSupport.NATIVE),
        ("cu128", "7.0", "2.7.1", ArchSupport.UNSUPPORTED),  # 2.7 cu128 left Volta out
        ("cu128", "7.0", "2.8.0", ArchSupport.NATIVE),  # 2.8 put it back
        ("cu128", "7.0", "2.11.0", ArchSupport.UNSUPPORTED),  # 2.11 dropped it again
        ("cu128", "6.1", "2.8.0", ArchSupport.UNSUPPORTED),  # no Pascal in cu128
        ("cu129", "12.1", "2.8.0", ArchSupport.NATIVE),
        ("cu129", "13.0", "2.8.0", ArchSupport.PTX_JIT),  # newer than 12.0+PTX
        ("cu130", "7.0", "2.9.0", ArchSupport.UNSUPPORTED),  # CUDA 13 drops Volta
        ("cu130", "7.5", "2.9.0", ArchSupport.NATIVE),
        ("cu130", "11.0", "2.9.0", ArchSupport.UNSUPPORTED),  # no sm_110 on x86_64, no PTX < it
    ],
)
def test_cuda_build_supports_cc(build, cc, torch, status):
    verdict = cuda_build_supports_cc(build, cc, torch)
    assert verdict.status is status
    assert verdict.supported is (status is not ArchSupport.UNSUPPORTED)


def test_without_torch_only_archs_every_release_carried_count():
    assert "7.0" not in wheel_arch_list("cu128")
    assert cuda_build_supports_cc("cu128", "7.0").status is ArchSupport.UNSUPPORTED
    assert cuda_build_supports_cc("cu128", "12.0").status is ArchSupport.NATIVE
    # only 2.7 carried 12.0 PTX, so a GPU newer than 12.x is not covered by cu128 as a whole
    assert wheel_arch_list("cu128")[-1] == "12.0"
    assert cuda_build_supports_cc("cu128", "13.0").status is ArchSupport.UNSUPPORTED


def test_unsupported_arch_message_is_actionable():
    message = cuda_build_supports_cc("cu126", "12.0", "2.7.1").message
    assert "12.0 is not in the torch 2.7.1 cu126 wheels" in message
    assert "no kernel image is available" in message


@pytest.mark.parametrize(
    ("build", "torch", "error"),
    [("cu999", "2.7", "unknown PyTorch CUDA build"), ("cu128", "2.6.0", "no cu128 wheels")],
)
def test_arch_list_errors(build, torch, error):
    with pytest.raises(CompatError, match=error):
        wheel_arch_list(build, torch)


# --- container toolkit ----------------------------------------------------------------


_UP_TO_1_17_8 = ["CVE-2026-24260"]


@pytest.mark.parametrize(
    ("version", "cves"),
    [
        (
            "1.14.3",
            [
                "CVE-2024-0132",
                "CVE-2024-0135",
                "CVE-2025-23359",
                "CVE-2025-23266",
                "CVE-2025-23267",
                *_UP_TO_1_17_8,
            ],
        ),
        (
            "1.16.2",
            ["CVE-2024-0135", "CVE-2025-23359", "CVE-2025-23266", "CVE-2025-23267", *_UP_TO_1_17_8],
        ),
        ("1.17.3", ["CVE-2025-23359", "CVE-2025-23266", "CVE-2025-23267", *_UP_TO_1_17_8]),
        ("1.17.4", ["CVE-2025-23266", "CVE-2025-23267", *_UP_TO_1_17_8]),
        ("1.17.8", _UP_TO_1_17_8),
        ("1.19.0", ["CVE-2026-24260"]),
        ("1.19.1", []),
        ("1.20.0", []),
    ],
)
def test_toolkit_findings(version, cves):
    assert [a.cve for a in toolkit_findings(version)] == cves


def test_toolkit_minimum_safe_version_is_the_newest_fix():
    assert TOOLKIT_MIN_SAFE == "1.19.1"
    assert all(a.url.startswith("https://") for a in TOOLKIT_ADVISORIES)
