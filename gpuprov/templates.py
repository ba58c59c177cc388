"""Which templates an inventory value may hold, since Ansible runs them on the controller.

ansible-core trusts the strings of inventory and vars files as templates, so a
``{{ lookup('pipe', ...) }}`` in an SSH key, a volume path or ``ansible_host``
runs a command on the controller the moment a play reads the value. A pull
request to users.yml must not be able to do that. gpuprov's variables and
Ansible's own (``ansible_*``, which Ansible templates to connect) may hold only
templates that read: a variable, a constant, the ``file`` and ``env`` lookups,
and a few pure filters. Anything else is refused, unless the value is marked
``!unsafe``, which tells Ansible to keep it as written. Controller-side: it
parses with Jinja2, as Ansible will.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from ansible.template import is_trusted_as_template
from jinja2 import nodes

# Lookups that read the controller and run nothing; both take names and paths only.
READING_LOOKUPS = frozenset({"file", "ansible.builtin.file", "env", "ansible.builtin.env"})
PURE_FILTERS = frozenset(
    {"default", "d", "trim", "lower", "upper", "string", "int", "bool", "basename"}
)
_LOOKUP_CALLS = frozenset({"lookup", "query", "q"})
_MARKERS = ("{{", "{%", "{#")
_ENVIRONMENT = jinja2.Environment()
# Variables may name variables; a chain this long is a loop or an attack, not a config.
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Refusal:
    """Why a templated value is refused, for the finding's message."""

    what: str

    def message(self) -> str:
        return (
            f"is a template that Ansible would run on the controller ({self.what}); inventory "
            "values may template only variables, constants, the file and env lookups and "
            f"the filters {', '.join(sorted(PURE_FILTERS))}"
        )


FIX = (
    "write the value itself; if it really contains '{{', '{%' or '{#', mark it "
    "!unsafe so Ansible keeps it as written (see docs/inventory.md, Templates)"
)


def is_template(text: str) -> bool:
    return any(marker in text for marker in _MARKERS)


def refusal(text: str, variable: Callable[[str], Any], depth: int = 0) -> Refusal | None:
    """Why ``text`` may not be templated, or None. ``variable(name)`` is the raw value
    of another variable of the same host (None when there is none), followed because
    ``{{ other }}`` runs whatever ``other`` holds."""
    if depth > _MAX_DEPTH:
        return Refusal(f"variables name each other more than {_MAX_DEPTH} deep")
    if "{#" in text:
        return Refusal("a {# comment #}, which hides what the value holds")
    try:
        tree = _ENVIRONMENT.parse(text)
    except jinja2.TemplateSyntaxError as error:
        return Refusal(f"not even valid Jinja: {error.message}")
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return Refusal(f"a {{% {type(node).__name__.lower()} %}} statement")
        for part in node.nodes:
            if not isinstance(part, nodes.TemplateData):
                found = _expression(part, variable, depth)
                if found is not None:
                    return found
    return None


def _expression(node: nodes.Node, variable: Callable[[str], Any], depth: int) -> Refusal | None:
    if isinstance(node, nodes.Const):
        return None
    if isinstance(node, nodes.Name):
        return _named(node.name, variable, depth)
    if isinstance(node, nodes.Add | nodes.Concat):
        parts = [node.left, node.right] if isinstance(node, nodes.Add) else node.nodes
        return _first(_expression(p, variable, depth) for p in parts)
    if isinstance(node, nodes.Getattr):
        if node.attr.startswith("_"):
            return Refusal(f"the attribute {node.attr!r}, a way out of Jinja's values")
        return _expression(node.node, variable, depth)
    if isinstance(node, nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and str(node.arg.value).startswith("_"):
            return Refusal(f"the item {node.arg.value!r}, a way out of Jinja's values")
        return _first(_expression(p, variable, depth) for p in (node.node, node.arg))
    if isinstance(node, nodes.Filter):
        if node.name not in PURE_FILTERS:
            return Refusal(f"the filter {node.name!r}")
        inner = [node.node] if node.node is not None else []
        return _arguments(node, inner, variable, depth)
    if isinstance(node, nodes.Call):
        return _call(node, variable, depth)
    return Refusal(f"a {type(node).__name__} expression")


def _call(node: nodes.Call, variable: Callable[[str], Any], depth: int) -> Refusal | None:
    called = node.node.name if isinstance(node.node, nodes.Name) else None
    if called not in _LOOKUP_CALLS:
        return Refusal("a call of something other than a lookup")
    plugin = node.args[0] if node.args else None
    if not isinstance(plugin, nodes.Const) or plugin.value not in READING_LOOKUPS:
        name = plugin.value if isinstance(plugin, nodes.Const) else "a computed name"
        return Refusal(f"the {name!r} lookup" if isinstance(name, str) else "a lookup")
    return _arguments(node, node.args[1:], variable, depth)


def _arguments(
    node: nodes.Call | nodes.Filter,
    positional: list[nodes.Node],
    variable: Callable[[str], Any],
    depth: int,
) -> Refusal | None:
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return Refusal("*args or **kwargs, which hide what is passed")
    given = [*positional, *(k.value for k in node.kwargs)]
    return _first(_expression(p, variable, depth) for p in given)


def _named(name: str, variable: Callable[[str], Any], depth: int) -> Refusal | None:
    for _, text in templates_in(variable(name)):
        inner = refusal(text, variable, depth + 1)
        if inner is not None:
            return Refusal(f"through the variable {name!r}: {inner.what}")
    return None


class TooBig(Exception):
    """A value with more parts than the budget allows."""


@dataclass
class Budget:
    """How many more values a walk may visit."""

    left: int

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise TooBig


def templates_in(
    value: Any, path: str = "", budget: Budget | None = None
) -> Iterator[tuple[str, Any]]:
    """(key path, text) of every string in ``value`` that Ansible would template: one
    it trusts (from an inventory or vars file, not ``!unsafe``) with template syntax."""
    if budget is not None:
        budget.spend()
    if isinstance(value, str):
        if is_template(value) and is_trusted_as_template(value):
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from templates_in(item, f"{path}.{key}", budget)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from templates_in(item, f"{path}[{index}]", budget)


def _first(found: Iterator[Refusal | None]) -> Refusal | None:
    return next((f for f in found if f is not None), None)
