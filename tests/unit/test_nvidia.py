"""nvidia-smi parsers over every real capture, plus small literal edge cases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuprov.core.nvidia import (
    QUERY_GPU_ARGS,
    QUERY_GPU_FIELDS,
    DriverState,
    NvidiaSmiParseError,
    classify_failure,
    parse_driver_info,
    parse_list,
    parse_query_gpu,
    parse_query_xml,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi"
CAPTURES = sorted((FIXTURES / "captures").glob("*.txt"))
XMLS = sorted((FIXTURES / "xml").glob("*.xml"))
BAR = "#" * 80


def sections(path: Path) -> list[tuple[str, str]]:
    """(command, body) for each `# $ nvidia-smi ...` section of a capture."""
    lines = path.read_text().splitlines()
    starts = [
        i
        for i in range(len(lines) - 3)
        if lines[i] == BAR and lines[i + 2].startswith("# $ ") and lines[i + 3] == BAR
    ]
    found = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        command = lines[start + 2][len("# $ ") :].strip()
        found.append((command, "\n".join(lines[start + 4 : end])))
    return found


def section(path: Path, command: str) -> list[str]:
    return [body for cmd, body in sections(path) if cmd == command]


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


def test_query_args_use_the_field_constant():
    assert QUERY_GPU_ARGS[0] == "--query-gpu=" + ",".join(QUERY_GPU_FIELDS)
    assert QUERY_GPU_ARGS[1] == "--format=csv,noheader,nounits"


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


# file stem -> (driver, cuda, name, memory MiB, ecc enabled, MIG gpu-instance ids)
EXPECTED_XML = {
    "a100-sxm4-v12": ("535.54.03", "12.2", "NVIDIA A100-SXM4-80GB", 81920, True, [3, 4, 5, 6]),
    "a10g": ("515.105.01", "11.7", "NVIDIA A10G", 23028, True, []),
    "quadro-p2000-v12": ("525.125.06", "12.0", "Quadro P2000", 5120, None, []),
    "rtx-3080-v13": ("595.58.03", "13.2", "NVIDIA GeForce RTX 3080", 10240, None, []),
    "tesla-t4": ("515.105.01", "11.7", "Tesla T4", 15360, True, []),
}


def test_every_xml_has_an_expectation():
    assert {p.stem for p in XMLS} == set(EXPECTED_XML)


@pytest.mark.parametrize("path", XMLS, ids=lambda p: p.stem)
def test_query_xml(path):
    driver, cuda, name, memory, ecc, gis = EXPECTED_XML[path.stem]
    report = parse_query_xml(path.read_text())
    assert (report.driver_version, report.cuda_version) == (driver, cuda)
    (gpu,) = report.gpus
    assert (gpu.index, gpu.name, gpu.memory_total_mib) == (0, name, memory)
    assert gpu.driver_version == driver
    assert gpu.uuid.startswith("GPU-")
    assert gpu.ecc_enabled is ecc
    assert gpu.ecc_uncorrected_volatile == (0 if ecc else None)
    assert [m.gpu_instance_id for m in gpu.mig_devices] == gis
    assert gpu.mig_enabled is (True if gis else None)


def test_xml_a100_mig_devices_and_missing_remap_data():
    report = parse_query_xml((FIXTURES / "xml" / "a100-sxm4-v12.xml").read_text())
    (gpu,) = report.gpus
    assert [m.memory_total_mib for m in gpu.mig_devices] == [19968] * 4
    assert gpu.remapped_rows_pending is None
    assert gpu.markers["remapped_rows_pending"] == "N/A"


def test_xml_a10g_remapped_rows_and_t4_retired_pages():
    a10g = parse_query_xml((FIXTURES / "xml" / "a10g.xml").read_text()).gpus[0]
    assert (a10g.remapped_rows_pending, a10g.remapped_rows_failure) == (False, False)
    assert a10g.remapped_rows_uncorrectable == 0
    t4 = parse_query_xml((FIXTURES / "xml" / "tesla-t4.xml").read_text()).gpus[0]
    assert (t4.retired_pages_pending, t4.retired_pages_double_bit) == (False, 0)


# --- literal edge cases ---------------------------------------------------------------

MIG_XML = """<?xml version="1.0" ?>
<nvidia_smi_log>
  <driver_version>550.54.15</driver_version>
  <cuda_version>12.4</cuda_version>
  <gpu id="00000000:07:00.0">
    <product_name>NVIDIA A100-SXM4-40GB</product_name>
    <mig_mode><current_mig>Enabled</current_mig><pending_mig>Disabled</pending_mig></mig_mode>
    <mig_devices>
      <mig_device><index>0</index><gpu_instance_id>1</gpu_instance_id>
        <compute_instance_id>0</compute_instance_id>
        <fb_memory_usage><total>19968 MiB</total></fb_memory_usage></mig_device>
    </mig_devices>
    <uuid>GPU-1</uuid>
    <fb_memory_usage><total>40960 MiB</total></fb_memory_usage>
    <ecc_mode><current_ecc>Enabled</current_ecc></ecc_mode>
    <ecc_errors>
      <volatile><sram_uncorrectable>2</sram_uncorrectable>
        <dram_uncorrectable>1</dram_uncorrectable></volatile>
      <aggregate><sram_uncorrectable>[Insufficient Permissions]</sram_uncorrectable>
        <dram_uncorrectable>[Insufficient Permissions]</dram_uncorrectable></aggregate>
    </ecc_errors>
    <retired_pages><pending_retirement>Yes</pending_retirement></retired_pages>
    <remapped_rows><remapped_row_unc>3</remapped_row_unc>
      <remapped_row_pending>Yes</remapped_row_pending>
      <remapped_row_failure>No</remapped_row_failure></remapped_rows>
  </gpu>
</nvidia_smi_log>
"""


def test_xml_mig_enabled_with_errors_and_permission_markers():
    (gpu,) = parse_query_xml(MIG_XML).gpus
    assert (gpu.mig_enabled, gpu.mig_pending) == (True, False)
    assert gpu.mig_devices[0].memory_total_mib == 19968
    assert gpu.ecc_uncorrected_volatile == 3
    assert gpu.ecc_uncorrected_aggregate is None
    assert gpu.markers["ecc_uncorrected_aggregate"] == "[Insufficient Permissions]"
    assert gpu.retired_pages_pending is True
    assert (gpu.remapped_rows_pending, gpu.remapped_rows_uncorrectable) == (True, 3)


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
            "upgrade the driver",
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
