"""The operator docs stay in step with the code they describe."""

from pathlib import Path

from gpuprov.core import variables
from gpuprov.core.schema import Map

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_inventory_reference_names_every_variable_and_key():
    text = (DOCS / "inventory.md").read_text()
    missing = [name for name in variables.ALL_VARIABLES if f"`{name}`" not in text]
    for name, node in variables.ALL_VARIABLES.items():
        if isinstance(node, Map):
            missing += [f"{name}.{key}" for key in node.fields if f"`{key}`" not in text]
    missing += [f"users.{key}" for key in variables.USER.fields if f"`{key}`" not in text]
    assert not missing, f"docs/inventory.md does not describe: {missing}"
