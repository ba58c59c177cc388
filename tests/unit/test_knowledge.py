"""`gpuprov facts`: every table the gates use, with its sources, as text and JSON."""

from __future__ import annotations

import json

from gpuprov import cli
from gpuprov.core import compat, knowledge, torch_matrix


def test_the_report_holds_every_row_of_every_table():
    found = knowledge.report()
    assert found["tables_updated"] == compat.TABLES_UPDATED
    assert len(found["driver_minimums"]) == len(compat.MIN_DRIVER_FOR_CUDA)
    assert {"cuda": "13.3.0", "driver": "610.43.02"}.items() <= found["driver_minimums"][-2].items()
    assert all(r["source"]["url"].startswith("https://") for r in found["driver_minimums"])
    assert [r["torch"] for r in found["torch_releases"]] == [r.torch for r in torch_matrix.RELEASES]
    assert found["builds_without_arch_list"] == ["cu132"]
    assert found["toolkit"]["minimum_safe"] == "1.19.1"
    assert "CVE-2026-24260" in {a["cve"] for a in found["toolkit"]["advisories"]}


def test_the_text_names_the_date_the_newest_rows_and_the_unknowns():
    text = knowledge.render(knowledge.report())
    assert f"last checked against their sources {compat.TABLES_UPDATED}" in text
    assert "13.3.1  610.43.02" in text
    assert "cu132*(?)" in text  # 2.14's cuDNN is not in a source
    assert "No arch list for cu132" in text
    assert "CVE-2026-24260  1.19.1" in text


def test_the_command_prints_text_and_json(capsys):
    assert cli.main(["facts"]) == 0
    assert capsys.readouterr().out.startswith("gpuprov's GPU-stack tables")
    assert cli.main(["facts", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(knowledge.report()))
