"""Every module's documentation is the YAML ansible-doc and ansible-lint read, and says
what its argument_spec takes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[4] / "plugins/modules").glob("*.py"))


def _block(source: str, name: str) -> dict | list | None:
    match = re.search(rf'^{name} = r"""(.*?)"""', source, re.MULTILINE | re.DOTALL)
    assert match, f"no {name}"
    return yaml.safe_load(match.group(1))


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.stem)
def test_the_documentation_parses_and_names_every_option(module):
    source = module.read_text()
    documentation = _block(source, "DOCUMENTATION")
    assert documentation["module"] == module.stem
    _block(source, "EXAMPLES")
    _block(source, "RETURN")
    spec = next(
        (node for node in ast.walk(ast.parse(source))
         if isinstance(node, ast.keyword) and node.arg == "argument_spec"), None,
    )  # fmt: skip
    if spec is None:  # the documentation of an action plugin, which does the work
        assert (module.parents[1] / "action" / module.name).is_file()
        return
    taken = {key.value for key in spec.value.keys if isinstance(key, ast.Constant)}
    assert taken == set(documentation.get("options") or {})
