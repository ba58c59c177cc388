"""The audit's rules on hand-made inspector documents (the on-disk cases are in
test_inspector.py)."""

import json

import pytest
from support.pins import CUDA_126

from gpuprov.core.audit import (
    IMAGE_LABELS,
    INSPECTOR_SCHEMA,
    AuditInputError,
    audit_image,
    render_table,
)


def dist(name, version, installer="pip", **extra):
    return {
        "kind": "dist-info",
        "name": name,
        "version": version,
        "installer": installer,
        "path": f"/opt/venv/lib/python3.11/site-packages/{name}-{version}.dist-info",
        "source": None,
        "cuda_runtime": None,
        "conda_package": None,
        "error": None,
        **extra,
    }


def doc(*envs):
    return {"schema": INSPECTOR_SCHEMA, "root": "/", "environments": list(envs)}


def env(prefix, records, python="3.11", kind="venv"):
    return {"prefix": prefix, "kind": kind, "python": python, "site_dirs": [], "records": records}


def family(torch="2.7.1+cu126", vision="0.22.1+cu126", audio="2.7.1+cu126"):
    return [
        dist("torch", torch),
        dist("torchvision", vision),
        dist("torchaudio", audio),
        dist("nvidia-cudnn-cu12", "9.5.1.17"),
        dist("numpy", "2.2.6"),
    ]


PROMISES = CUDA_126
PIN = {
    "reference": "registry.local/team/torch",
    "digest": "sha256:" + "b" * 64,
    "promises": PROMISES,
}


def labels(promises=PROMISES, manager="pip"):
    out = {IMAGE_LABELS[k]: str(v) for k, v in promises.items() if v is not None}
    out[IMAGE_LABELS["package_manager"]] = manager
    return out


def fails(report):
    return [f.message for f in report.findings if f.severity == "fail"]


def test_label_keys_are_the_oci_style_set_the_template_writes():
    assert dict(IMAGE_LABELS) == {
        "python": "org.gpuprov.python",
        "torch": "org.gpuprov.torch",
        "torchvision": "org.gpuprov.torchvision",
        "torchaudio": "org.gpuprov.torchaudio",
        "cuda": "org.gpuprov.cuda",
        "cudnn": "org.gpuprov.cudnn",
        "package_manager": "org.gpuprov.package-manager",
    }
    with pytest.raises(TypeError):
        IMAGE_LABELS["torch"] = "x"


def test_a_consistent_image_passes_and_reports_json():
    report = audit_image(doc(env("/opt/venv", family())), labels(), "12.6.3", PIN)
    assert report.passed and report.findings == ()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True and data["reference"] == "registry.local/team/torch"
    assert [r["name"] for r in data["rows"]] == ["torch", "torchvision", "torchaudio", "numpy"]


@pytest.mark.parametrize(
    ("inspection", "pin", "message"),
    [
        ({"environments": []}, PIN, "not the output of gpuprov's inspector"),
        ({"schema": INSPECTOR_SCHEMA}, PIN, "no 'environments' list"),
        (doc(), {"reference": "x"}, "no 'promises' mapping"),
        (doc(), {"promises": {"torch": "2.7.1"}}, "lack 'cuda' (write 'none' for a CPU image)"),
        (doc({"prefix": "/opt/venv"}), PIN, "environment /opt/venv has no 'records' list"),
    ],
)
def test_inputs_that_cannot_be_audited_are_refused_with_a_reason(inspection, pin, message):
    with pytest.raises(AuditInputError) as caught:
        audit_image(inspection, {}, None, pin)
    assert message in str(caught.value)


def test_torch_built_for_another_cuda_than_the_pin_and_the_image_fails():
    records = family("2.7.1+cu128", "0.22.1+cu128", "2.7.1+cu128")
    report = audit_image(doc(env("/opt/venv", records)), labels(), "12.6.3", PIN)
    assert fails(report) == [
        "/opt/venv: torch 2.7.1+cu128 is built for CUDA 12.8 (cu128) but the pin promises 12.6;"
        " install the cu126 wheels or change the pin",
        "/opt/venv: torch 2.7.1+cu128 is built for CUDA 12.8 (cu128) but CUDA_VERSION is "
        "12.6.3; install the cu126 wheels or change the pin",
    ]


def test_image_cuda_version_that_differs_from_the_pin_fails():
    report = audit_image(doc(env("/opt/venv", family())), labels(), "12.8.1", PIN)
    assert "the image's CUDA_VERSION is 12.8.1 but the pin promises CUDA 12.6" in fails(report)[-1]


def test_torch_whose_cuda_build_cannot_be_told_fails_on_a_cuda_image():
    records = family("2.7.1", "0.22.1", "2.7.1")
    report = audit_image(doc(env("/opt/venv", records)), labels(), None, PIN)
    assert fails(report) == [
        "/opt/venv: cannot tell which CUDA build torch 2.7.1 is (no +cuXXX local version, no "
        "nvidia-cuda-runtime requirement); install it from "
        "https://download.pytorch.org/whl/<build> so the build is recorded"
    ]
    records[0]["cuda_runtime"] = "12.6"
    assert audit_image(doc(env("/opt/venv", records)), labels(), None, PIN).passed


def test_a_cpu_torch_on_a_cuda_pin_fails():
    records = family("2.7.1+cpu", "0.22.1+cpu", "2.7.1+cpu")
    report = audit_image(doc(env("/opt/venv", records)), labels(), None, PIN)
    assert fails(report) == [
        "/opt/venv: torch 2.7.1+cpu is a CPU build but the image promises CUDA 12.6; "
        "install the cu126 wheels"
    ]


def test_a_build_torch_never_published_fails():
    records = family("2.7.1+cu121", "0.22.1+cu121", "2.7.1+cu121")
    promises = {**PROMISES, "cuda": "12.1"}
    pin = {**PIN, "promises": promises}
    report = audit_image(doc(env("/opt/venv", records)), labels(promises), None, pin)
    assert fails(report) == [
        "/opt/venv: torch 2.7 was never published for cu121 (builds: cu118, cu126, cu128); "
        "this wheel did not come from download.pytorch.org"
    ]


def test_versions_that_differ_from_the_promises_fail_and_missing_ones_too():
    records = [r for r in family("2.7.0+cu126", "0.22.0+cu126") if r["name"] != "torchaudio"]
    report = audit_image(doc(env("/opt/venv", records)), labels(), None, PIN)
    assert fails(report) == [
        "/opt/venv: torch is 2.7.0+cu126 but the pin promises 2.7.1; rebuild the image or "
        "update the pin",
        "/opt/venv: torchvision is 0.22.0+cu126 but the pin promises 0.22.1; rebuild the image "
        "or update the pin",
        "the pin promises torchaudio 2.7.1 but the image has no torchaudio",
    ]


def test_a_torch_the_table_does_not_know_fails_with_where_to_add_it():
    records = family("2.99.0+cu126", "0.99.0+cu126", "2.99.0+cu126")
    promises = {**PROMISES, "torch": "2.99.0", "torchvision": "0.99.0", "torchaudio": "2.99.0"}
    pin = {**PIN, "promises": promises}
    [message] = fails(audit_image(doc(env("/opt/venv", records)), labels(promises), None, pin))
    assert "torch 2.99.0+cu126 is not in gpuprov's release table (knows 2.4-2.14)" in message
    assert "gpuprov/core/torch_matrix.py" in message


def test_python_and_cudnn_must_keep_the_pin_promise():
    records = family()
    records[3] = dist("nvidia-cudnn-cu12", "9.1.0.70")
    report = audit_image(doc(env("/opt/venv", records, python="3.12")), labels(), None, PIN)
    assert fails(report) == [
        "/opt/venv: torch's environment runs python 3.12 but the pin promises 3.11",
        "/opt/venv: nvidia-cudnn-cu12 is 9.1.0.70 but the pin promises cuDNN 9.5.1.17",
    ]


def test_package_manager_label_must_name_the_manager_that_installed_torch():
    report = audit_image(doc(env("/opt/venv", family())), labels(manager="conda"), None, PIN)
    assert fails(report) == [
        "image label org.gpuprov.package-manager says 'conda' but torch was installed by pip"
    ]
    no_label = labels()
    del no_label[IMAGE_LABELS["package_manager"]]
    report = audit_image(doc(env("/opt/venv", family())), no_label, None, PIN)
    assert fails(report) == [
        "image has no org.gpuprov.package-manager label: build it with gpuprov's image template"
    ]


def test_cpu_pin_needs_its_cuda_label_and_accepts_none_spellings():
    promises = {**PROMISES, "cuda": None, "cudnn": None}
    records = [
        r for r in family("2.7.1+cpu", "0.22.1+cpu", "2.7.1+cpu") if "cudnn" not in r["name"]
    ]
    pin = {**PIN, "promises": promises}
    cpu_labels = labels(promises) | {IMAGE_LABELS["cuda"]: "none"}
    assert audit_image(doc(env("/opt/venv", records)), cpu_labels, None, pin).findings == ()
    report = audit_image(doc(env("/opt/venv", records)), labels(promises), "12.6.3", pin)
    assert fails(report) == [
        "image label org.gpuprov.cuda is None but the pin promises 'none': rebuild the image "
        "from the pin with gpuprov's image template"
    ]
    assert [f.severity for f in report.findings] == ["warn", "fail"]


def test_torch_in_two_environments_is_a_warning():
    inspection = doc(env("/opt/venv", family()), env("/usr", family(), kind="system"))
    report = audit_image(inspection, labels(), None, PIN)
    assert report.passed
    assert [f.message for f in report.findings] == [
        "torch is installed in 2 environments (/opt/venv, /usr); users get whichever python "
        "they start: keep one"
    ]


def test_render_table_shows_rows_findings_and_verdict():
    records = family(vision="0.22.1+cu128")
    records.append(dist("numpy", "1.26.4", installer="uv", source="file:///wheels/numpy.whl"))
    text = render_table(audit_image(doc(env("/opt/venv", records)), labels(), None, PIN))
    lines = text.splitlines()
    assert lines[0] == f"image registry.local/team/torch@sha256:{'b' * 64}"
    assert lines[1].split() == ["ENVIRONMENT", "PACKAGE", "VERSION", "MANAGER", "CUDA", "SOURCE"]
    assert lines[3].split() == ["/opt/venv", "torchvision", "0.22.1+cu128", "pip", "cu128", "-"]
    assert lines[6].split() == [
        "/opt/venv",
        "numpy",
        "1.26.4",
        "uv",
        "-",
        "file:///wheels/numpy.whl",
    ]
    assert sum(line.startswith("FAIL: ") for line in lines) == 2
    assert lines[-1] == "FAIL"


def test_render_table_of_an_empty_image_says_so():
    promises = {**PROMISES, "torch": None, "cuda": "none"}
    text = render_table(audit_image(doc(), {}, None, {"promises": promises}))
    assert "(no torch, torchvision, torchaudio or numpy found)" in text
