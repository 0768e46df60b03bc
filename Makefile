# vmcoreos: every set-up step lives here, so a fresh Debian machine needs only
# `make demo` or `make test`.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages: Go and govmomi's source build the vCenter simulator; etcd-server
# is the real etcd the simulated nodes run; sqv verifies images, gpgv those sqv cannot judge
# the way we do (SHA-1, clearsigned DIGESTS); gnupg makes test keys;
# ignition ships ignition-validate, which tests run on the rendered Ignition configs;
# systemd ships systemd-analyze, which tests run on the example units (verify, security);
# prometheus-node-exporter's textfile collector reads the files --metrics-file writes;
# pipx runs the README's `pipx install .`.
APT_PACKAGES := golang-go golang-github-vmware-govmomi-dev etcd-server etcd-client gpgv sqv gnupg patch ca-certificates curl ignition systemd prometheus-node-exporter pipx
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VCSIM := build/vcsim
VCSIM_SRC := tests/harness/vcsim/main.go tests/harness/vcsim/build.sh $(wildcard tests/harness/vcsim/*.patch tests/harness/vcsim/overlay/*.go)

.PHONY: all deps apt venv demo test test-unit docs bench bench-peers clean check-install

all: deps

deps: apt venv $(VCSIM)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	    echo "apt: installing$$(echo " $$missing" | tr '\n' ' ')"; \
	    $(SUDO) apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# Reinstalled whenever the declared dependencies or their pinned versions change.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

# What a user's `pip install .` does, in a fresh venv: it must print no build warnings
# (-v shows the build backend's output, which pip otherwise hides; Python warnings
# print as "file:line: SomeWarning: text").
CHECK_VENV := build/check-install
# Built from a copy of the checkout's files, so setuptools' build/lib never lands here.
check-install:
	rm -rf $(CHECK_VENV) && mkdir -p $(CHECK_VENV)/src && $(PYTHON) -m venv $(CHECK_VENV)/venv
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $(CHECK_VENV)/src
	$(CHECK_VENV)/venv/bin/pip install -v -c constraints.txt $(CHECK_VENV)/src > $(CHECK_VENV).log 2>&1 || { tail -20 $(CHECK_VENV).log; exit 1; }
	@! grep -nE '[A-Za-z]+Warning: ' $(CHECK_VENV).log || { echo "check-install: the build printed warnings (above; full log $(CHECK_VENV).log)"; exit 1; }
	rm -rf $(CHECK_VENV) $(CHECK_VENV).log
	@echo "check-install: pip install . printed no build warnings"

$(VCSIM): $(VCSIM_SRC)
	sh tests/harness/vcsim/build.sh $(abspath $(VCSIM))

demo: deps
	$(PY) -m tests.harness.demo

# pytest-xdist spreads the suite over the cores (-n auto: one worker per core; TEST_WORKERS=0 runs it in one
# process); worksteal keeps both busy to the end although one test (the power race) takes minutes. Each
# worker has its own simulators, 127.x subnets, state dir and leak checks (tests/conftest.py).
TEST_WORKERS ?= auto
test: deps
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist worksteal

# The unit tests alone: no Go build, no simulator, guest simulator, etcd or release server (tests/e2e/ holds
# those). They do call Debian's command-line checkers (gnupg, gpgv, sqv, ignition-validate, systemd-analyze).
test-unit: apt venv
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not e2e"

# docs/commands.md (every command's --help) and docs/configuration.md's environment table
# (vmcoreos/environment.py), regenerated; tests/test_docs.py fails while either is stale.
docs: venv
	$(PY) -m tools.docs

# e.g. make bench BENCH_ARGS='--repeat 1 --counts 1,3,30'
bench: deps
	$(PY) -m bench.run $(BENCH_ARGS)

# Ansible's community.vmware comes inside the `ansible` package on PyPI; its
# vmware_deploy_ovf needs pyvmomi and requests in the Python that runs it.
PEERS_VENV := build/bench-peers-venv
PEERS_PACKAGES := ansible==12.3.0 pyvmomi requests

$(PEERS_VENV)/bin/ansible-playbook:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet $(PEERS_PACKAGES)

bench-peers: deps $(PEERS_VENV)/bin/ansible-playbook
	$(PY) -m bench.peers $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) .pytest_cache
