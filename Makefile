# gpuprov: `make run` provisions this machine, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
INVENTORY ?= inventories/local
PYTEST_ARGS ?=

.PHONY: run stop test quick lint style unit integration syntax bench clean-testbed

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

## quick: under a minute: ruff, yamllint, the syntax check and the unit tests not marked slow
## (ansible-lint and the slow unit tests, which run real programs, are in make test)
quick:
	scripts/bootstrap --dev
	$(MAKE) --no-print-directory style
	$(MAKE) --no-print-directory unit PYTEST_ARGS='-m "not slow" $(PYTEST_ARGS)'

lint: style
	ansible-lint --profile production

style: syntax
	ruff check gpuprov plugins tests bench
	ruff format --check gpuprov plugins tests bench
	yamllint -s .

syntax:
	@for inv in inventories/local inventories/example; do \
	  gpuprov check -i $$inv || exit 1; \
	  ansible-playbook -i $$inv --syntax-check site.yml playbooks/*.yml >/dev/null \
	    || { echo "syntax: a playbook with $$inv failed (Ansible names it above)"; exit 1; }; \
	done; echo "syntax: every playbook with both inventories: ok"

# Every core works (the unit layer is CPU-bound); a file's tests stay together, in order.
unit:
	pytest -q -n auto --dist loadfile tests/unit $(PYTEST_ARGS)

# Two lanes side by side: the tests of this machine's own Docker in the background (their
# output follows), the test bed's in front; one bed per machine, so the bed's stay in order.
MACHINE_TESTS := tests/integration/test_site_local.py
integration:
	@log=$$(mktemp); \
	pytest -q -p no:cacheprovider $(MACHINE_TESTS) $(PYTEST_ARGS) >$$log 2>&1 & machine=$$!; \
	pytest -q -p no:cacheprovider --durations=15 --ignore=$(MACHINE_TESTS) tests/integration $(PYTEST_ARGS); \
	bed=$$?; wait $$machine; machine_status=$$?; \
	echo "--- $(MACHINE_TESTS), run beside the test bed:"; cat $$log; rm -f $$log; \
	test $$bed -eq 0 && test $$machine_status -eq 0

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
