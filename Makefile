# genloop: `make demo` and `make test` set everything up (a .venv here) and run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.genloop-installed

.PHONY: install browser demo test test-fast bench bench-full reproduce reproduce-compare clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# constraints.txt pins what this set-up is tested with (torch: the CPU wheel here, a user's
	# platform build elsewhere); torch goes first, so nothing below can pull another build.
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt torch
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[test]"
	# torch-fidelity's and clean-fid's own preprocessing code, for the tests of genloop's
	# Inception conventions; --no-deps: nothing else (no torchvision, no other torch) comes in
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -c constraints.txt torch-fidelity clean-fid
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

# The paper's claims at CPU scale (examples/reproduce/; 80 min measured on 2 cores): runs in
# runs/reproduce (resumed when rerun), tables and figures in docs/reproduction/.
reproduce: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/genloop reproduce --out runs/reproduce --results docs/reproduction --jobs 2

# A rerun into another folder, compared with the committed tables (exit 1 outside an interval).
reproduce-compare: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/genloop reproduce --out runs/reproduce-rerun --results runs/reproduce-rerun/results --jobs 2
	$(VENV)/bin/genloop reproduce --compare runs/reproduce-rerun/results --results docs/reproduction

clean:
	rm -rf $(VENV) genloop-demo .pytest_cache
