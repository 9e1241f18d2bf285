"""The workflow stays lint-clean and formatted (snakemake --lint, snakefmt --check)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_snakemake_lint_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/demo.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition" in out, out


def test_snakefmt_check_passes():
    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "rules/"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_config_plans_the_amazon_dag(tmp_path):
    """With the default config and no file of one's own, the whole Amazon DAG plans: the inputs are downloaded."""
    for name in ("Snakefile", "rules", "scripts", "config", "envs"):  # the workflow alone: no resources/
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "8", "results/detections/amazon.geojson"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Error validating config" not in out and "Missing input files" not in out, out[-6000:]
    downloads = sorted(re.findall(r"rule download_input:\n(?:    .*\n)*?    output: (\S+)", out))
    assert downloads == [
        f"resources/downloads/{name}"
        for name in (
            "amazon_all_48px_v3.1_2023_positives_0.999_cleaned.geojson",
            "amazon_basin.geojson",
            "aquaculture-faziendas-negatives2025-08.geojson",
            "indigenous_territories_impacts.geojson",
            "riverbank_negatives_v2025-08.geojson",
        )
    ], out[-6000:]
    for rule in (
        "fetch_imagenet_weights",
        "positive_points",
        "negative_points",
        "train_classifier",
        "region_cells",
        "merge_detections",
    ):
        assert re.search(rf"^{rule}\s+\d+\s*$", out, re.M), (rule, out[-3000:])
