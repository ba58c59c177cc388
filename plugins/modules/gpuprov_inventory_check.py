#!/usr/bin/python
"""Documentation of the gpuprov_inventory_check action, which runs on the controller."""

DOCUMENTATION = r"""
module: gpuprov_inventory_check
short_description: Validate gpuprov inventories before any host is touched
description:
  - Runs the same check as C(gpuprov check) on the controller and fails with every error,
    each naming the file, the host or user, and the key.
options:
  sources:
    description: Inventory directories or files, usually C(ansible_inventory_sources).
    type: list
    elements: path
    required: true
author: gpuprov
"""

EXAMPLES = r"""
- name: Check the inventory
  gpuprov_inventory_check:
    sources: "{{ ansible_inventory_sources }}"
"""

RETURN = r"""
errors:
  description: One line per problem found.
  type: list
  elements: str
  returned: always
"""
