"""The SLURM profile on a real single-node SLURM cluster (../shared/tools/slurm-ci), two small jobs.

Runs in CI (CI=true) or with GARIMPO_SLURM_TEST=1, as root; it starts the cluster when none answers and
stops it again afterwards.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
TOOLS = SHARED / "tools" / "slurm-ci"
pytestmark = pytest.mark.workflow


def _cluster_up() -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(["sinfo"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm_cluster():
    if not (os.environ.get("CI") == "true" or os.environ.get("GARIMPO_SLURM_TEST") == "1"):
        pytest.skip("SLURM profile test runs in CI or with GARIMPO_SLURM_TEST=1 (it installs and starts SLURM)")
    if not (TOOLS / "start.sh").exists():
        pytest.skip(f"{TOOLS}/start.sh not found (../shared is only on the project's machines)")
    if os.geteuid() != 0:
        pytest.skip("starting the SLURM test cluster needs root")
    started = False
    if not _cluster_up():
        proc = subprocess.run(["bash", str(TOOLS / "start.sh")], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:  # the machine could not host SLURM (e.g. apt unreachable): say so, loudly
            pytest.skip(f"could not start the SLURM test cluster: {proc.stderr[-800:]}")
        started = True
    yield
    if started:
        subprocess.run(["bash", str(TOOLS / "stop.sh")], capture_output=True, timeout=120)


def test_profile_runs_jobs_through_slurm(slurm_cluster, tmp_path):
    for name in ("Snakefile", "rules", "scripts", "config", "envs", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "results/points/positive.csv",
        "--profile",
        "profiles/slurm",
        "--configfile",
        "config/demo.yaml",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert (tmp_path / "results/points/positive.csv").stat().st_size > 0
    assert "2 of 2 steps (100%) done" in out
    jobs = subprocess.run(["sacct", "-X", "-n", "--format=State"], capture_output=True, text=True).stdout.split()
    assert jobs.count("COMPLETED") >= 2  # the jobs really went through SLURM's accounting
