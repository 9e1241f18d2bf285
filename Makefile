# Two commands do everything: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
SNAKEMAKE := PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake
DEMO_TARGETS := results/detections/demo.geojson results/detections/demo_overview.png results/eval/demo.json

.PHONY: install demo test lint clean-demo

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

lint: install
	$(SNAKEMAKE) --lint --configfile config/demo.yaml
	$(BIN)/snakefmt --check Snakefile rules/

clean-demo:
	rm -rf results/demo_world results/points results/tiles results/stats results/split.csv results/models \
		results/scenes results/candidates results/detections results/eval results/cache .snakemake/metadata
