"""The pure core: standard library only, strings in, data out, no I/O.

Ansible ships this package to managed hosts as module_utils, so nothing here
may import a third-party package or the rest of gpuprov, and modules inside it
import each other relatively.
"""
