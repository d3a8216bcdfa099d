# kserve-ansible: one entry point for set-up and tasks.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
KSA_CACHE ?= $(HOME)/.cache/kserve-ansible
export KSA_CACHE
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(KSA_CACHE)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
REQUIREMENTS := $(wildcard requirements/*.txt) constraints.txt model/requirements.txt requirements.yml \
	requirements/install_collections.py
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | sha256sum | cut -c1-12)
MIRROR ?= $(abspath ../shared/upstream)

.PHONY: help setup tools system-deps loadtest demo test lint unit molecule cluster-up cluster-down cluster-status bench clean collection sanity

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install everything pinned: requirements/dev.txt and the collections (idempotent)

$(STAMP): $(REQUIREMENTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt -c constraints.txt
	$(BIN)/python requirements/install_collections.py
	@rm -f $(VENV)/.installed-*; touch $@

tools: ## build (or reuse) the local control plane's binaries from the Go module proxy
	bash devcluster/gotools/build.sh

system-deps: ## Debian packages: the local cluster's (nftables, iproute2) and a real Prometheus for the monitoring tests
	bash devcluster/install_system_deps.sh
	bash tests/monitoring/install_prometheus.sh

lint: setup ## quality gates: yamllint, ruff, ansible-lint (production), syntax check, ansible-test sanity
	yamllint --strict .
	ruff check .
	ruff format --check .
	ansible-playbook --syntax-check site.yml
	ansible-lint --profile production
	hadolint model/Dockerfile
	bash collections/sanity.sh

collection: setup ## build the collection kserve_ansible.serving (links resolved) into build/*.tar.gz
	bash collections/build.sh

sanity: setup ## ansible-test sanity on the built collection (part of lint; first run fetches its tools)
	bash collections/sanity.sh

unit: setup ## fast tests (no cluster)
	pytest -m "not cluster" -q

# The site scenario converges every role (with idempotence and verify); the per-component scenarios repeat
# what tests/integration/test_platform_roles.py covers and take ~20 min more with the real controllers, so
# they run with `make molecule` (all seven) rather than in every `make test`.
test: setup tools system-deps lint ## the whole test suite: gates + unit + cluster tests + the site molecule scenario
	bash tests/run_lanes.sh

molecule: setup tools ## molecule scenarios only (each on a fresh local cluster): make molecule S=knative
	molecule --base-config .config/molecule/config.yml test $(if $(S),-s $(S),--all)

cluster-up: setup tools ## start the local control plane (idempotent); prints how to use it
	bash devcluster/install_system_deps.sh
	$(BIN)/python -m devcluster up

cluster-down: ## stop the local control plane, leaving nothing running
	$(BIN)/python -m devcluster down

cluster-status: ## show the local control plane's components
	$(BIN)/python -m devcluster status

demo: cluster-up ## set up, start the local cluster and converge site.yml from the offline mirror
	ansible-playbook site.yml -e @inventory/local-cluster.yml -e kserve_ansible_mirror_dir=$(MIRROR)

loadtest: setup tools ## the seed's vegeta scenarios against URL (default a local model server on :8080)
	cd tests/loadtests && ./run_load_test.sh $(if $(URL),--url $(URL))

bench: setup tools ## benchmarks (not tests): see bench/README.md
	$(BIN)/python -m bench.model_server
	$(BIN)/python -m bench.platform

clean: cluster-down ## remove the virtualenv (the Go build cache in $(KSA_CACHE) is kept)
	rm -rf $(VENV)
