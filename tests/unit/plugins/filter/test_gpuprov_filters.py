"""The filters that hand the core to the roles, called as Ansible calls them."""

import importlib.util
from dataclasses import asdict
from pathlib import Path

import pytest

from gpuprov.ansible_inventory import AnsibleInventory, Sources
from gpuprov.core import labels, rules, variables

REPO = Path(__file__).resolve().parents[4]


def _filters() -> dict:
    spec = importlib.util.spec_from_file_location(
        "gpuprov_filter_plugin", REPO / "plugins/filter/gpuprov.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


FILTERS = _filters()


@pytest.fixture(scope="module")
def example():
    reader = AnsibleInventory(Sources(inventory=[str(REPO / "inventories/example")]))
    hostvars = {
        host.name: reader.variables.get_vars(host=host, include_hostvars=False)
        for host in reader.manager.get_hosts()
    }
    return reader, hostvars


def test_workspaces_filter_plans_what_gpuprov_plan_plans(example):
    reader, hostvars = example
    fleet = rules.fleet(reader.inventory())
    hosts = sorted(hostvars)
    for host in hosts:
        planned = FILTERS["gpuprov_workspaces"](hostvars, hosts, host)
        assert planned == [asdict(w) for w in fleet.on_host(host)], host
    # The example gives gpu-l40s its own port range: the filter must read the host's own.
    l40s = FILTERS["gpuprov_workspaces"](hostvars, hosts, "gpu-l40s")
    assert l40s and all(21000 <= w["port"] <= 21999 for w in l40s)


def test_workspaces_filter_on_a_host_without_users_is_empty(example):
    _, hostvars = example
    hosts = sorted(hostvars)
    assert FILTERS["gpuprov_workspaces"](hostvars, hosts, "nobody-here") == []


@pytest.mark.parametrize("name", sorted(variables.DEFAULTS))
def test_default_filter_gives_the_cores_default(name):
    assert FILTERS["gpuprov_default"](name) == variables.DEFAULTS[name]


def test_default_filter_refuses_a_variable_without_a_shared_default():
    with pytest.raises(KeyError, match="gpuprov_users has no shared default"):
        FILTERS["gpuprov_default"]("gpuprov_users")


def test_label_filter_names_the_label_containers_carry():
    # Users' own scripts filter on this name: it is part of gpuprov's interface.
    assert FILTERS["gpuprov_label"]("user") == "org.gpuprov.user" == labels.USER_LABEL


def test_workspaces_filter_sizes_open_limits_to_the_engine(example):
    _, hostvars = example
    hosts = sorted(hostvars)
    host = next(h for h in hosts if FILTERS["gpuprov_workspaces"](hostvars, hosts, h))
    engine = {"NCPU": 256, "MemTotal": 4 << 40}
    for workspace in FILTERS["gpuprov_workspaces"](hostvars, hosts, host, engine):
        assert "memory" in workspace["limits"] or "memory" in workspace["unlimited"]
        assert "cpus" in workspace["limits"] or "cpus" in workspace["unlimited"]


def test_workspaces_filter_refuses_a_limit_above_the_host(example):
    from ansible.errors import AnsibleFilterError

    _, hostvars = example
    hosts = sorted(hostvars)
    host = next(h for h in hosts if FILTERS["gpuprov_workspaces"](hostvars, hosts, h))
    with pytest.raises(AnsibleFilterError, match="more than the host's"):
        FILTERS["gpuprov_workspaces"](hostvars, hosts, host, {"NCPU": 1, "MemTotal": 1 << 28})
