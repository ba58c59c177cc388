# gpuprov: `make run` provisions this machine, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
INVENTORY ?= inventories/local
PYTEST_ARGS ?=

.PHONY: run stop test quick lint unit integration syntax bench clean-testbed

## run: install the controller and run site.yml on $(INVENTORY) (this machine by default)
run:
	scripts/bootstrap
	ansible-playbook -i $(INVENTORY) site.yml

## stop: stop the workspaces and the Docker engine `make run` started; every file stays
stop:
	@test -x $(BIN)/ansible-playbook || { echo "stop: nothing to stop: $(VENV) is missing, so make run never ran here"; exit 1; }
	ansible-playbook -i $(INVENTORY) playbooks/stop.yml

## test: the whole suite: lint, unit, then the real test bed (dockerd, registry, SSH hosts)
test:
	scripts/bootstrap --test
	$(MAKE) --no-print-directory lint unit integration

## quick: lint and unit tests only (seconds)
quick:
	scripts/bootstrap --dev
	$(MAKE) --no-print-directory lint unit

lint: syntax
	ruff check gpuprov plugins tests bench
	ruff format --check gpuprov plugins tests bench
	yamllint -s .
	ansible-lint --profile production

syntax:
	@for inv in inventories/local inventories/example; do \
	  gpuprov check -i $$inv || exit 1; \
	  ansible-playbook -i $$inv --syntax-check site.yml playbooks/*.yml >/dev/null \
	    || { echo "syntax: a playbook with $$inv failed (Ansible names it above)"; exit 1; }; \
	done; echo "syntax: every playbook with both inventories: ok"

# Every core works (the unit layer is CPU-bound); a file's tests stay together, in order.
unit:
	pytest -q -n auto --dist loadfile tests/unit $(PYTEST_ARGS)

# Two lanes side by side: the test bed's tests, and those of this machine's Docker.
integration:
	pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=15 tests/integration $(PYTEST_ARGS)

## bench: measure, print and save figures (bench/results); needs root for the SSH hosts and the test bed
bench:
	scripts/bootstrap --bench
	python bench/inventory_check.py
	python bench/fleet_status.py
	python bench/playbook_runs.py
	python bench/cutover.py

## clean-testbed: remove the test bed's cached images (the next make test rebuilds them)
clean-testbed:
	@if pgrep -f 'gpuprov-testbed-' >/dev/null; then echo "clean-testbed: a test bed is running; let it finish first"; exit 1; fi
	rm -rf /var/cache/gpuprov
