# Two entry points for a fresh machine: `make demo` (main job, offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench bench-gpu paper clean

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

# The training-step benchmark on a GPU (docs/training.md, "GPU step time"): a few minutes,
# recorded into experiments/results/bench/. COCO: SPLIT/ images + annotations/captions_SPLIT.json.
COCO ?= $(or $(TACO_DATA),data)/coco
COCO_SPLIT ?= train2014
bench-gpu: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m taco_plus.bench.train_step --data $(COCO) --split $(COCO_SPLIT) \
		--device cuda --compile elic:bf16,full:bf16 --steps 20 --warmup 3 --workers 0,4,8 --record

# The report: tables and figures regenerated from experiments/results, then the PDF
# (paper/build/report.pdf); installs a minimal TeX Live with apt when it is missing.
paper: $(STAMP)
	$(MAKE) -C paper PY=$(abspath $(PY))

clean:
	rm -rf $(VENV) outputs runs
