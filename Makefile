# The README's two commands: `make up` and `make test`.
SHELL := /bin/bash
VENV := .venv
IMAGE_DIR := build/images/test-guest

.PHONY: up test bootstrap deploy image demo unit bench bench-fleet bench-migrate lint clean down molecule

up: bootstrap deploy image demo   ## bring the all-in-one cloud up and show a VM answering SSH

test: deploy image                ## run the whole test suite (unit, modules, integration)
	scripts/bootstrap.sh --test
	$(VENV)/bin/pytest -q --durations=25 -m "not swift" tests
	$(VENV)/bin/pytest -q --durations=15 -m swift tests

unit: bootstrap                   ## the tests that need no deployed cloud
	$(VENV)/bin/pytest -q -m "not integration and not swift" tests
	$(VENV)/bin/pytest -q -m "swift and not integration" tests

bootstrap:
	scripts/bootstrap.sh

deploy: bootstrap
	$(VENV)/bin/stackctl deploy

image: bootstrap
	$(VENV)/bin/python images/test-guest/build.py --out $(IMAGE_DIR)

demo:
	scripts/demo.sh

bench: bootstrap deploy image
	$(VENV)/bin/python bench/run.py

bench-fleet: bootstrap image      ## rollouts on 1/3/6 lab hosts and VMs across hosts (~40 min)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	$(VENV)/bin/python bench/fleet.py

bench-migrate: bootstrap image    ## live/cold migration and a 4-VM drain on 3 lab hosts vs raw virsh (~15 min)
	$(VENV)/bin/python bench/migrate.py

lint:
	$(VENV)/bin/ruff check plugins library stackctl tests bench images molecule

down:                             ## delete the demo VM, bucket, credentials and tenant (services stay)
	scripts/demo.sh --down

clean: down
	rm -rf build

molecule: bootstrap deploy image  ## molecule aio, then multinode (3 lab hosts): converge, idempotence, verify
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/molecule test -s aio
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/molecule test -s multinode
