"""What Ansible ships to hosts of gpuprov: the standard-library core and the image
inspector, linked from the gpuprov package (one copy of the code); the CLI and the
controller-side inventory reader stay on the controller."""
