"""The workflow stays lint-clean and formatted (snakemake --lint, snakefmt --check)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_snakemake_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/demo.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition" in out, out


def test_snakefmt_check_passes():
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "rules/"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_config_plans_the_amazon_dag():
    """The real default config validates, and planning names the user inputs still missing here."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "8", "results/detections/amazon.geojson"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert "Error validating config" not in out, out
    # No input files are shipped yet (download rules come with the real-imagery issue): the plan stops at them.
    assert "Missing input files" in out and "resources/regions/amazon.geojson" in out, out
