# Two commands do everything: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
SNAKEMAKE := PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake
DEMO_TARGETS := results/detections/demo.geojson results/detections/demo_overview.png results/eval/demo.json \
	results/stats/demo_protected_areas.csv results/stats/demo_over_time.csv results/change/demo/footprint.geojson \
	results/publish/demo/MANIFEST.sha256
# Publishing one region of a config: `make publish REGION=tapajos` (CONFIG=config/config.yaml by default).
REGION ?= demo
CONFIG ?= $(if $(filter demo,$(REGION)),config/demo.yaml,config/config.yaml)

.PHONY: install demo publish report test test-fast lint format clean-demo bench unlock bench-e2e

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .  # the package itself, editable
	touch $@

demo: install
	$(SNAKEMAKE) $(DEMO_TARGETS) --cores $(CORES) --configfile config/demo.yaml
	$(MAKE) --no-print-directory report publish REGION=demo
	@cat results/eval/demo.json

# A region's release bundle, results/publish/$(REGION)/: a bundle changed since its manifest set aside (Snakemake
# would not rewrite it), the workflow's part, then the Snakemake report (which Snakemake builds only after a run),
# then the report added to the manifest (refused when another file changed).
publish: install
	$(BIN)/python scripts/publish_manifest.py results/publish/$(REGION) --prepare
	$(SNAKEMAKE) results/publish/$(REGION)/MANIFEST.sha256 --cores $(CORES) --configfile $(CONFIG)
	$(SNAKEMAKE) results/publish/$(REGION)/MANIFEST.sha256 --report results/publish/$(REGION)/report.zip \
		--configfile $(CONFIG)
	$(BIN)/python scripts/publish_manifest.py results/publish/$(REGION) --add report.zip

# The Snakemake report of a region's results (maps, tables, curves, captions): results/report.zip.
report: install
	$(SNAKEMAKE) results/publish/$(REGION)/MANIFEST.sha256 --report results/report.zip --configfile $(CONFIG)

test: install
	HF_HUB_OFFLINE=1 PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

# Unit tests only: no Snakemake run, no training run (the `workflow` and `slow` markers), on every core.
test-fast: install
	HF_HUB_OFFLINE=1 PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -n auto -m "not workflow and not slow"

# Brute-force vs two-stage streaming scan of a synthetic 10980 px granule (cached in results/bench/).
# Quick run: make bench BENCH_ARGS="--size 2048". The last output line is the JSON result.
BENCH_ARGS ?=
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_detect.py --bench-dir results/bench --threads $(CORES) $(BENCH_ARGS)

# One cell end to end: the composite of synthetic Sentinel-2 L2A items of a full granule (COGs in a STAC catalog),
# the two-stage scan of it, and the floor of decoding their pixels (cached in results/bench/e2e/; the granule and
# the bench model of `make bench` are reused when there). Quick run: make bench-e2e BENCH_E2E_ARGS="--size 2048".
BENCH_E2E_ARGS ?=
bench-e2e: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_e2e.py --bench-dir results/bench/e2e --threads $(CORES) $(BENCH_E2E_ARGS)

# What CI checks before the tests; `make format` applies the formatters.
lint: install
	$(BIN)/ruff check scripts tests
	$(BIN)/ruff format --check scripts tests
	$(BIN)/mypy
	$(BIN)/snakefmt --check Snakefile rules/
	$(SNAKEMAKE) --lint --configfile config/demo.yaml

format: install
	$(BIN)/ruff check --fix scripts tests
	$(BIN)/ruff format scripts tests
	$(BIN)/snakefmt Snakefile rules/

# After a run was killed: "Directory cannot be locked" until the lock is released.
unlock: install
	$(SNAKEMAKE) --unlock --configfile $(CONFIG)

clean-demo:
	rm -rf results/demo_world results/points results/training_images results/stats results/split.csv results/models \
		results/regions results/heldout results/detections results/change results/eval results/cache results/publish \
		results/report.zip .snakemake/metadata
