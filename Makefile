# Two commands for a fresh Debian/Ubuntu machine (root or sudo):
#   make demo   set up everything and run the demo
#   make test   set up everything and run the whole test suite
#   make check  ruff and the fast tests (no `slow` ones), for feedback while working
# Re-running either is fast: the venv is rebuilt only when setup.cfg changes, and apt is
# touched only when a package is missing.

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# mosquitto: the embedded broker for the demo and the tests; openssl: test certificates;
# systemd: systemd-analyze for the unit-file checks; python3-venv: the virtual environment.
# The web page tests also need a headless Chromium (Debian's chromium-headless-shell, or
# chromium where that package does not exist), driven by playwright without its download.
# openjdk-17-jre-headless: Java for `loadwatch screen --engine spark` and its test (not
# installed when a `java` is already on PATH, e.g. another JDK 17+).
APT_PACKAGES := mosquitto openssl systemd python3-venv
JAVA_PACKAGE := openjdk-17-jre-headless
PYTEST_ARGS ?=

.PHONY: setup system-packages demo test check faults lint bench clean

setup: system-packages $(STAMP)

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v java >/dev/null 2>&1 || missing="$$missing $(JAVA_PACKAGE)"; \
	browser=""; command -v chromium-headless-shell >/dev/null 2>&1 || \
	  command -v chromium >/dev/null 2>&1 || browser=yes; \
	if [ -n "$$missing$$browser" ]; then \
	  echo "installing:$$missing$${browser:+ (a headless Chromium for the web page tests)}"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  if [ -n "$$browser" ]; then \
	    if apt-cache show chromium-headless-shell >/dev/null 2>&1; then \
	      missing="$$missing chromium-headless-shell"; else missing="$$missing chromium"; fi; \
	  fi; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,bench,screen,spark,cbor]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/loadwatch demo $(DEMO_ARGS)

# The whole suite, slow tests included, on two pytest-xdist workers (tests are independent:
# each starts its own broker, meters and ptys on free ports; a file's tests stay on one
# worker, so module fixtures are built once). Tests marked `serial` measure wall-clock
# timing against baud arithmetic, which a busy neighbour skews: they run alone afterwards.
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest -q -m serial $(PYTEST_ARGS)

# Fast feedback while working (target < 90 s): ruff and every test not marked `slow`
# (scenarios, campaigns, end-to-end and deploy tests are; `make test` runs them too).
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m "not slow and not serial" $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest -q -m "serial and not slow" $(PYTEST_ARGS)

# The fault campaigns alone (kills, full disk, corrupt files, clock steps, hostile meters and
# commands), with their summary table; they are part of `make test` too.
faults: setup
	$(VENV)/bin/python -m pytest -q -s tests/faults $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/detection.py
	$(VENV)/bin/python bench/scorer.py
	$(VENV)/bin/python bench/bus.py
	$(VENV)/bin/python bench/delivery.py
	$(VENV)/bin/python bench/footprint.py
	$(VENV)/bin/python bench/web.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
