"""nvidia-smi parsers over every real capture, plus small literal edge cases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.captures import CAPTURES, DRIVER_610, FIXTURES, section, sections

from gpuprov.core.nvidia import (
    COMPUTE_APPS_COMMAND,
    NOT_OFFERED,
    QUERY_GPU_FIELDS,
    QUERY_GPU_FORMAT,
    ComputeProcess,
    DriverState,
    NvidiaSmiParseError,
    classify_failure,
    parse_compute_apps,
    parse_driver_info,
    parse_help_query_gpu,
    parse_list,
    parse_query_gpu,
    query_fields,
    query_gpu_command,
)


def query_gpu_sections(path: Path) -> list[str]:
    return [body for cmd, body in sections(path) if cmd.startswith("nvidia-smi --query-gpu=")]


# file stem -> (name, driver, memory MiB, compute capability, ecc, mig)
EXPECTED = {
    "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05": (
        "NVIDIA GeForce RTX 2080 SUPER",
        "595.71.05",
        8192,
        "7.5",
        None,
        None,
    ),
    "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05": (
        "NVIDIA GeForce RTX 4080 SUPER",
        "595.71.05",
        16376,
        "8.9",
        None,
        None,
    ),
    "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01": (
        "NVIDIA H100 80GB HBM3",
        "590.48.01",
        81559,
        "9.0",
        True,
        False,
    ),
    "linux-x86_64__nvidia-h100-mig__590.48.01": (
        "NVIDIA H100 80GB HBM3",
        "590.48.01",
        81559,
        "9.0",
        True,
        True,
    ),
    "linux-x86_64__nvidia-h200__590.48.01": (
        "NVIDIA H200",
        "590.48.01",
        143771,
        "9.0",
        True,
        False,
    ),
    "linux-x86_64__nvidia-l40s__595.80": ("NVIDIA L40S", "595.80", 46068, "8.9", True, None),
}


def test_every_capture_has_an_expectation():
    assert {p.stem for p in CAPTURES} == set(EXPECTED)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_query_fields_exist_in_the_drivers_help(path):
    (help_text,) = section(path, "nvidia-smi --help-query-gpu")
    documented = set(re.findall(r'^"([^"]+)"', help_text, re.MULTILINE))
    assert set(QUERY_GPU_FIELDS) <= documented


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_help_of_every_capture_offers_every_field_undeprecated(path):
    (help_text,) = section(path, "nvidia-smi --help-query-gpu")
    offered = parse_help_query_gpu(help_text)
    assert len(offered) > 150
    assert offered["gpu_name"] is offered["name"] is False
    # the 595 branch deprecates driver_version for kmd_version; the 590 branch has neither note
    expected = tuple(
        "kmd_version" if f == "driver_version" and offered["driver_version"] else f
        for f in QUERY_GPU_FIELDS
    )
    assert offered["driver_version"] is ("kmd_version" in offered)
    assert query_fields(offered) == expected
    assert query_gpu_command(offered) == (
        "nvidia-smi",
        "--query-gpu=" + ",".join(expected),
        QUERY_GPU_FORMAT,
    )


def _without(help_text: str, *fields: str) -> str:
    """The help with some properties removed, as an older driver prints it."""
    blocks = help_text.split("\n\n")
    return "\n\n".join(b for b in blocks if not any(b.startswith(f'"{f}"') for f in fields))


def test_an_older_driver_gets_only_the_fields_it_offers_and_the_rest_read_as_not_offered():
    path = FIXTURES / "captures" / "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
    (help_text,) = section(path, "nvidia-smi --help-query-gpu")
    older = _without(help_text, "compute_cap", "remapped_rows.pending", "remapped_rows.failure")
    fields = query_fields(parse_help_query_gpu(older))
    assert "compute_cap" not in fields and "remapped_rows.pending" not in fields
    assert "remapped_rows.uncorrectable" in fields and "index" in fields
    # The header names the columns, so the same parser reads the shorter query.
    (full,) = [b for b in query_gpu_sections(path)[:1]]
    header, row = full.strip().splitlines()[:2]
    names = [h.split(" [")[0] for h in header.split(", ")]
    values = row.split(", ")
    kept = [i for i, n in enumerate(names) if n in fields]
    text = ", ".join(header.split(", ")[i] for i in kept) + "\n"
    text += ", ".join(values[i] for i in kept) + "\n"
    (gpu,) = parse_query_gpu(text)
    assert gpu.compute_capability is None and gpu.remapped_rows_pending is None
    assert gpu.markers["compute_capability"] == NOT_OFFERED
    assert gpu.markers["remapped_rows_failure"] == NOT_OFFERED
    assert gpu.remapped_rows_uncorrectable == 0 and gpu.name == "NVIDIA H100 80GB HBM3"


def test_a_deprecated_field_is_not_asked_for():
    # The 610 branch marks driver_version deprecated in --help-query-gpu; the
    # driver version then comes from --version's "KMD version" line.
    help_text = (
        '"index"\nZero based index of the GPU.\n\n'
        '"driver_version"\nDeprecated, see "kmd_version" instead.\n\n'
        '"name" or "gpu_name"\nThe official product name of the GPU.\n'
    )
    offered = parse_help_query_gpu(help_text)
    assert offered == {"index": False, "driver_version": True, "name": False, "gpu_name": False}
    assert query_fields(offered) == ("index", "name")
    assert query_fields(None) == QUERY_GPU_FIELDS


def test_a_notice_where_a_driver_version_was_is_a_marker_not_a_version():
    (gpu,) = parse_query_gpu("index, name, driver_version\n0, NVIDIA H100, Deprecated\n")
    assert gpu.driver_version is None
    assert gpu.markers["driver_version"] == "[Deprecated]"


def test_a_kmd_version_column_is_the_driver_version():
    (gpu,) = parse_query_gpu("index, name, kmd_version\n0, NVIDIA H100, 610.57.04\n")
    assert gpu.driver_version == "610.57.04"


@pytest.mark.parametrize("name", ["version.txt", "nvidia-smi.txt"])
def test_the_610_branch_reads_kmd_and_cuda_umd_versions(name):
    info = parse_driver_info((DRIVER_610 / name).read_text())
    assert (info.driver_version, info.cuda_version) == ("610.57.04", "13.3")


def test_a_deprecated_notice_is_never_taken_for_a_version():
    text = (
        'DRIVER version                     : Deprecated, see "KMD version" instead\n'
        'CUDA version                       : Deprecated, see "CUDA UMD version" instead\n'
    )
    with pytest.raises(NvidiaSmiParseError):
        parse_driver_info(text)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_version_and_header_give_driver_and_cuda(path):
    driver = EXPECTED[path.stem][1]
    (version,) = section(path, "nvidia-smi --version")
    info = parse_driver_info(version)
    assert info.driver_version == driver
    assert re.fullmatch(r"1[23]\.\d", info.cuda_version)
    tables = section(path, "nvidia-smi")
    assert len(tables) == 2
    for table in tables:
        assert parse_driver_info(table) == info


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_query_gpu_idle_and_load(path):
    name, driver, memory, cc, ecc, mig = EXPECTED[path.stem]
    bodies = query_gpu_sections(path)
    assert len(bodies) == 2
    for body in bodies:
        (gpu,) = parse_query_gpu(body)
        assert (gpu.index, gpu.name, gpu.driver_version) == (0, name, driver)
        assert gpu.memory_total_mib == memory
        assert gpu.compute_capability == cc
        assert gpu.ecc_enabled is ecc
        assert gpu.mig_enabled is mig
        assert gpu.uuid == "GPU-00000000-0000-0000-0000-000000000000"
        if ecc:
            assert gpu.ecc_uncorrected_volatile == 0
            assert gpu.ecc_uncorrected_aggregate == 0
        else:
            assert gpu.markers["ecc_enabled"] == "[N/A]"
            assert gpu.ecc_uncorrected_volatile is None


def test_h100_capture_details():
    path = FIXTURES / "captures" / "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
    (gpu,) = parse_query_gpu(query_gpu_sections(path)[0])
    assert gpu.pci_bus_id == "00000000:00:09.0"
    assert gpu.persistence_mode is True
    assert gpu.remapped_rows_pending is False
    assert gpu.remapped_rows_failure is False
    assert gpu.remapped_rows_uncorrectable == 0
    assert gpu.retired_pages_pending is None
    assert gpu.markers["retired_pages_pending"] == "[N/A]"


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_list(path):
    name = EXPECTED[path.stem][0]
    (listing,) = section(path, "nvidia-smi -L")
    (gpu,) = parse_list(listing)
    assert (gpu.index, gpu.name) == (0, name)
    assert gpu.uuid == "GPU-00000000-0000-0000-0000-000000000000"


def test_list_of_the_mig_capture_has_its_mig_devices():
    path = FIXTURES / "captures" / "linux-x86_64__nvidia-h100-mig__590.48.01.txt"
    (gpu,) = parse_list(section(path, "nvidia-smi -L")[0])
    assert gpu.mig_enabled is True
    assert [m.profile for m in gpu.mig_devices] == ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
    assert [m.index for m in gpu.mig_devices] == [0, 1, 2, 3]
    assert gpu.mig_devices[1].uuid == "MIG-00000001-0000-0000-0000-000000000001"


# file stem -> the compute-apps rows of its idle and its load run: (pid, name, MiB)
COMPUTE_APPS = {
    "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05": (
        [],
        [(5268, "ffmpeg", 370), (5267, "ffmpeg", 230)],
    ),
    # A desktop: the compositor holds the GPU even when nothing else runs.
    "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05": (
        [(2165, "/usr/bin/kwin_wayland", 25)],
        [(2165, "/usr/bin/kwin_wayland", 25), (5022, "ffmpeg", 503), (5021, "ffmpeg", 360)],
    ),
    "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01": (
        [],
        [(11327, "/root/tools/memhog", 2566), (11328, "/root/tools/memhog", 1542),
         (11345, "./gpu_burn", 15690)],
    ),
    "linux-x86_64__nvidia-h100-mig__590.48.01": (
        [],
        [(21180, "/root/tools/memhog", 2296), (21181, "/root/tools/memhog", 1272),
         (21198, "./gpu_burn", 7484)],
    ),
    "linux-x86_64__nvidia-h200__590.48.01": (
        [],
        [(10291, "/root/tools/memhog", 2566), (10293, "/root/tools/memhog", 1542),
         (10309, "./gpu_burn", 28234)],
    ),
    "linux-x86_64__nvidia-l40s__595.80": ([], [(20037, "ffmpeg", 538), (20038, "ffmpeg", 681)]),
}  # fmt: skip


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_compute_apps_idle_and_load(path):
    """The command gpuprov runs is the one every capture ran, in its idle and its load run."""
    idle, load = section(path, " ".join(COMPUTE_APPS_COMMAND))
    for body, expected in zip((idle, load), COMPUTE_APPS[path.stem], strict=True):
        processes = parse_compute_apps(body)
        assert [(p.pid, p.process_name, p.used_memory_mib) for p in processes] == expected
        assert {p.gpu_uuid for p in processes} <= {"GPU-00000000-0000-0000-0000-000000000000"}


# --- literal edge cases ---------------------------------------------------------------


def test_query_gpu_noheader_nounits_with_markers():
    text = (
        "0, NVIDIA A100-SXM4-40GB, GPU-a, 00000000:07:00.0, 550.54.15, 40960, 8.0, "
        "Enabled, Enabled, Enabled, Enabled, 0, 0, [N/A], [Not Supported], 0, No, No\n"
        "1, Tesla T4, GPU-b, 00000000:08:00.0, 550.54.15, 15360, 7.5, [N/A], [N/A], "
        "Disabled, Enabled, [Insufficient Permissions], N/A, 0, No, [N/A], [N/A], [N/A]\n"
    )
    a100, t4 = parse_query_gpu(text)
    assert (a100.index, a100.compute_capability, a100.mig_enabled) == (0, "8.0", True)
    assert a100.retired_pages_pending is None
    assert a100.markers["retired_pages_pending"] == "[Not Supported]"
    assert (t4.index, t4.memory_total_mib, t4.mig_enabled) == (1, 15360, None)
    assert t4.ecc_uncorrected_volatile is None
    assert t4.markers["ecc_uncorrected_volatile"] == "[Insufficient Permissions]"
    assert t4.markers["ecc_uncorrected_aggregate"] == "N/A"
    assert t4.retired_pages_pending is False


def test_query_gpu_with_header_and_units_maps_columns_by_name():
    text = (
        "name, memory.total [MiB], index, compute_cap\nNVIDIA H100 80GB HBM3, 81559 MiB, 3, 9.0\n"
    )
    (gpu,) = parse_query_gpu(text)
    assert (gpu.name, gpu.memory_total_mib, gpu.index, gpu.compute_capability) == (
        "NVIDIA H100 80GB HBM3",
        81559,
        3,
        "9.0",
    )


def test_query_gpu_rejects_an_error_message_instead_of_csv():
    with pytest.raises(NvidiaSmiParseError, match="1 values for 18 fields"):
        parse_query_gpu('Field "compute_cap" is not a valid field to query.\n')


def test_query_gpu_rejects_garbage_in_a_number():
    row = ", ".join(["x", "GPU", "u", "b", "1", "lots"] + ["[N/A]"] * 12)
    with pytest.raises(NvidiaSmiParseError, match="field index"):
        parse_query_gpu(row)


def test_empty_query_output_means_no_gpus():
    assert parse_query_gpu("") == []


COMPUTE_HEADER = (
    "timestamp, gpu_name, gpu_bus_id, gpu_serial, gpu_uuid, pid, process_name, "
    "used_gpu_memory [MiB]\n"
)


def test_compute_apps_without_a_memory_figure_and_with_a_comma_in_the_name():
    text = COMPUTE_HEADER + (
        "2026/07/03 22:11:09.916, NVIDIA H200, 00000000:83:00.0, [N/A], GPU-a, 7, "
        "/home/al/runs, v2/train, [N/A]\n"
        "2026/07/03 22:11:09.916, NVIDIA H200, 00000000:84:00.0, [N/A], [N/A], 8, python3, "
        "10 MiB\n"
    )
    assert parse_compute_apps(text) == [
        ComputeProcess(7, "/home/al/runs, v2/train", None, "GPU-a"),
        ComputeProcess(8, "python3", 10, None),
    ]


def test_compute_apps_columns_come_from_the_header():
    text = "pid, used_gpu_memory [MiB], process_name, gpu_uuid\n42, 300 MiB, python3, GPU-b\n"
    assert parse_compute_apps(text) == [ComputeProcess(42, "python3", 300, "GPU-b")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "not even its header"),
        ("No running processes found\n", "without pid, process_name"),
        (COMPUTE_HEADER + "Unknown Error\n", "row 1 has 1 values for 8 fields"),
        (COMPUTE_HEADER + "t, g, b, s, u, [N/A], python3, 10 MiB\n", "expected a pid"),
        (COMPUTE_HEADER + "t, g, b, s, u, 7, python3, lots\n", "whole number"),
    ],
)
def test_compute_apps_rejects_what_it_cannot_read(text, needle):
    with pytest.raises(NvidiaSmiParseError, match=needle):
        parse_compute_apps(text)


def test_list_rejects_unknown_lines():
    with pytest.raises(NvidiaSmiParseError, match="No devices were found"):
        parse_list("No devices were found\n")


def test_old_driver_mig_listing():
    text = (
        "GPU 0: A100-SXM4-40GB (UUID: GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f)\n"
        "  MIG 1g.5gb Device 0: (UUID: MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0)\n"
    )
    (gpu,) = parse_list(text)
    assert gpu.mig_devices[0].uuid == "MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0"
    assert gpu.mig_devices[0].profile == "1g.5gb"


def test_driver_info_without_a_driver_raises():
    with pytest.raises(NvidiaSmiParseError, match="classify_failure"):
        parse_driver_info("No devices were found")


@pytest.mark.parametrize(
    ("rc", "output", "state", "needle"),
    [
        (127, "bash: nvidia-smi: command not found", DriverState.NOT_INSTALLED, "install"),
        (None, "", DriverState.NOT_INSTALLED, "install the driver"),
        (
            12,
            "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make "
            "sure that the NVIDIA Display Driver is properly installed and present in your "
            "system.",
            DriverState.NOT_INSTALLED,
            "reinstall",
        ),
        (
            9,
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.",
            DriverState.NOT_LOADED,
            "nouveau",
        ),
        (6, "No devices were found", DriverState.NO_DEVICES, "lspci"),
        (
            18,
            "Failed to initialize NVML: Driver/library version mismatch\n"
            "NVML library version: 570.124",
            DriverState.VERSION_MISMATCH,
            "reboot",
        ),
        (255, "Failed to initialize NVML: Unknown Error", DriverState.FAILED, "daemon-reload"),
        (
            2,
            'Field "compute_cap" is not a valid field to query.',
            DriverState.FAILED,
            "--help-query-gpu",
        ),
        (
            15,
            "Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error",
            DriverState.FAILED,
            "exit status 15",
        ),
        (0, "GPU 0: NVIDIA H100 (UUID: GPU-1)", DriverState.OK, "answered"),
    ],
)
def test_classify_failure(rc, output, state, needle):
    status = classify_failure(rc, output)
    assert status.state is state
    assert needle in status.explanation
    assert status.ok is (state is DriverState.OK)


def test_version_mismatch_keeps_the_library_version():
    status = classify_failure(
        18,
        "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 570.124",
    )
    assert status.library_version == "570.124"
    assert "570.124" in status.explanation
    assert status.detail == "Failed to initialize NVML: Driver/library version mismatch"
