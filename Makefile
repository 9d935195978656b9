# ntdm: `make demo` (set up + run the pipeline on the built-in synthetic data) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
export MAX_JOBS ?= 2
CUDA_SOURCES := $(wildcard cuda/*.h cuda/*.cpp cuda/*/*.h cuda/*/*.cpp cuda/*/*.cu)

.PHONY: install system-deps demo test bench build clean

install: $(VENV)/.ntdm-installed

# Open3D needs the system library libusb-1.0 (Debian: libusb-1.0-0).
system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so'; then \
	  echo "installing libusb-1.0-0 (needed by open3d)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  if command -v apt-get >/dev/null; then \
	    $$SUDO apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q libusb-1.0-0; }; \
	  else echo "error: install libusb-1.0 with your system's package manager" >&2; exit 1; fi; \
	fi

# torch is pinned so that a CPU machine takes the local CPU wheel instead of multi-GB CUDA packages;
# --no-build-isolation makes the extension build against that torch.
$(VENV)/.deps-installed: pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel ninja
	$(PIP) install -q torch==$(TORCH_VERSION)
	@touch $@

$(VENV)/.ntdm-installed: $(VENV)/.deps-installed setup.py $(CUDA_SOURCES)
	$(PIP) install -q --no-build-isolation -e '.[test]'
	@touch $@

# incremental rebuild of the extension in place (development)
build: $(VENV)/.deps-installed
	$(PY) setup.py -q build_ext --inplace

# the synthetic pipeline with the settings of configs/$(SCALE).yaml (SCALE=demo unless given)
demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" SCALE=$${SCALE:-demo} bash recipes/synthetic.sh

test: install
	$(PY) -m pytest -q tests

bench: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash recipes/bench.sh

clean:
	rm -rf build ntdm_cli/_C*.so *.egg-info
