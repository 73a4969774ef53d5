# Two entry points for a fresh machine: `make demo` (main job, offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench paper clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[ner,test,slurm]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m taco_plus.demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -m "not gpu and not network" --durations=15

# The report: tables and figures regenerated from experiments/results, then the PDF
# (paper/build/report.pdf); installs a minimal TeX Live with apt when it is missing.
paper: $(STAMP)
	$(MAKE) -C paper PY=$(abspath $(PY))

clean:
	rm -rf $(VENV) outputs runs
