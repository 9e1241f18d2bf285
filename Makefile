# Two commands do everything: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
SNAKEMAKE := PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake
DEMO_TARGETS := results/detections/demo.geojson results/detections/demo_overview.png results/eval/demo.json \
	results/stats/demo_protected_areas.csv

.PHONY: install demo test lint clean-demo bench

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

demo: install
	$(SNAKEMAKE) $(DEMO_TARGETS) --cores $(CORES) --configfile config/demo.yaml
	@cat results/eval/demo.json

test: install
	HF_HUB_OFFLINE=1 PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

# Brute-force vs two-stage streaming scan of a synthetic 10980 px granule (cached in results/bench/).
# Quick run: make bench BENCH_ARGS="--size 2048". The last output line is the JSON result.
BENCH_ARGS ?=
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_detect.py --bench-dir results/bench --threads $(CORES) $(BENCH_ARGS)

lint: install
	$(SNAKEMAKE) --lint --configfile config/demo.yaml
	$(BIN)/snakefmt --check Snakefile rules/

clean-demo:
	rm -rf results/demo_world results/points results/tiles results/stats results/split.csv results/models \
		results/regions results/heldout results/detections results/eval results/cache .snakemake/metadata
