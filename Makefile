# genloop: `make demo` and `make test` set everything up (a .venv here) and run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.genloop-installed

.PHONY: install browser demo test test-fast bench bench-full clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch is pinned (CPU wheel here; the same pin gives a user's platform build) and
	# installed first, so nothing below can pull another build.
	$(PY) -m pip install --disable-pip-version-check -q "torch==2.13.0"
	$(PY) -m pip install --disable-pip-version-check -q -e ".[test]"
	# torch-fidelity's and clean-fid's own preprocessing code, for the tests of genloop's
	# Inception conventions; --no-deps: nothing else (no torchvision, no other torch) comes in
	$(PY) -m pip install --disable-pip-version-check -q --no-deps "torch-fidelity==0.4.0" "clean-fid==0.1.35"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/genloop demo --out genloop-demo

# Headless Chromium for the report's browser test: installed from Debian's packages when this
# runs as root with apt-get (CI); elsewhere that one test is skipped with a message.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium is not installed and cannot be installed here: the browser test will be skipped"

test: $(STAMP) browser
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

bench-full: $(STAMP)
	$(PY) benchmarks/run_all.py --full

clean:
	rm -rf $(VENV) genloop-demo .pytest_cache
