# Two commands: `make demo` and `make test`. Each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Debian packages: build deps of systemd-python and picamera2 (python-prctl),
# Kivy's GL and touch libraries, udev and systemd-analyze for the tests.
APT_PACKAGES := python3 python3-venv python3-dev gcc pkg-config libsystemd-dev libcap-dev \
  ca-certificates libgl1 libegl1 libmtdev1 udev systemd iproute2 e2fsprogs mount \
  espeak-ng alsa-utils xvfb xauth xdotool gettext coturn chromium iptables nftables

export KIVY_NO_ARGS := 1
export KIVY_HOME := $(CURDIR)/.kivy

.PHONY: demo test deps apt lint typecheck pytest bench clean

apt:
	@scripts/ensure-apt $(APT_PACKAGES)
	@# coturn is here for tests only: never leave a system TURN server running.
	@if [ "$$(id -u)" = 0 ] && [ -d /run/systemd/system ] && systemctl is-enabled coturn >/dev/null 2>&1; then \
	  systemctl disable --now coturn; fi

$(BIN)/.deps: requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory apt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

deps: $(BIN)/.deps

demo: deps
	@scripts/demo

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: deps
	$(BIN)/mypy

pytest: deps
	$(BIN)/python -m pytest -q

test: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: deps
	$(BIN)/python -m tests.perf

clean:
	rm -rf $(VENV) .kivy .pytest_cache .mypy_cache .ruff_cache .hypothesis
