"""gpuprov: provision GPU servers for deep-learning teams from Ansible inventories."""

__version__ = "0.1.0"
