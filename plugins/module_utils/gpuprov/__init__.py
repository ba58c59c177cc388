"""gpuprov's code for Ansible, linked from the gpuprov package (one copy of the code).

Modules import the standard-library core and the image inspector, which Ansible
ships to hosts with them; the filters and the inventory-check action import the
controller-side inventory reader (ansible_inventory, templates), which no module
imports, so it never leaves the controller. It sits beside the core because it
imports it relatively, as it does in the gpuprov package the CLI runs.
"""
