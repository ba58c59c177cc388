"""Run gpuprov's modules in-process, as Ansible would on a host: arguments through
`patch_module_args`, the result from the JSON the module prints as it exits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from ansible.module_utils.testing import patch_module_args

# The modules import the core from the collection gpuprov.gpu, as on a host
# (tests/conftest.py makes the clone importable as it).
PLUGINS = Path(__file__).resolve().parents[4] / "plugins"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, PLUGINS / "modules" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_module(capsys):
    """Call a module's main() with ``args``; its result as a dict."""

    def run(module: ModuleType, args: dict) -> dict:
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run
