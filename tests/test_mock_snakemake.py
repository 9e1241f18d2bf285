"""Rule scripts run standalone: garimpo.smk.mock_snakemake builds the job Snakemake would run."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from garimpo.geo.cells import write_cell_list
from garimpo.smk import mock_snakemake, script_args

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow  # loads the workflow through Snakemake


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A copy of the workflow (no results), the current directory for the test."""
    for name in ("Snakefile", "rules", "scripts", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(
            src, tmp_path / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {})
        )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _dry_run_job(workdir: Path, target: str, rule: str) -> dict:
    """input, output and wildcards of ``rule``'s job in Snakemake's own dry run for ``target``."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", target, "-n", "--cores", "2", "--configfile", "config/demo.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    block = re.search(rf"^rule {rule}:\n((?:    .*\n)+)", out, re.M)
    assert block, out[-3000:]
    fields = dict(re.findall(r"^    (\w+): (.*)$", block.group(1), re.M))
    return {k: fields.get(k, "").split(", ") for k in ("input", "output", "wildcards")}


@pytest.mark.parametrize(
    "rule, wildcards, target",
    [
        ("positive_points", {}, "results/points/positive.csv"),
        ("fetch_training_images", {"cls": "negative"}, "results/training_images/negative_index.csv"),
        (
            "detect_cell",
            {"region": "demo", "period": "2022", "cell": "E0001S0001"},
            "results/regions/demo/2022/chip_scores/E0001S0001.npz",
        ),
    ],
)
def test_the_mock_job_is_the_job_snakemake_runs(workdir, rule, wildcards, target):
    smk = mock_snakemake(rule, configfiles="config/demo.yaml", root=workdir, **wildcards)
    real = _dry_run_job(workdir, target, rule)
    assert sorted(smk.input) == sorted(real["input"])
    assert sorted(smk.output) == sorted(real["output"])
    assert dict(smk.wildcards) == wildcards
    assert smk.rule == rule and len(smk.log) == 1 and smk.log[0].startswith(f"logs/{rule}")
    assert smk.config["run_regions"] == ["demo"]  # config/demo.yaml over config/config.yaml
    assert Path.cwd() == workdir  # paths are relative to the workflow, as in a job


def test_params_threads_and_resources_are_the_rules(workdir):
    smk = mock_snakemake(
        "detect_cell", configfiles=["config/demo.yaml"], root=workdir, region="demo", period="2021", cell="E0001S0001"
    )
    assert smk.params.chip_size_m == 640 and smk.params.scan["stride_px"] == 16  # config/demo.yaml
    assert smk.input.composite == "results/regions/demo/2021/composites/E0001S0001.tif"
    composite = mock_snakemake(
        "composite_cell", configfiles="config/demo.yaml", root=workdir, region="demo", period="2023", cell="E0001S0001"
    )
    # A cell's composite searches its period's dates, not imagery.period (the training images' period).
    assert composite.params.imagery["period"] == ["2023-01-01", "2023-12-31"]
    assert smk.resources.gpu == 1 and smk.resources.mem_mb == 2000
    assert 1 <= smk.threads <= 2
    cells = mock_snakemake("region_cells", configfiles="config/demo.yaml", root=workdir, region="demo")
    assert cells.params.cell_size_m == 10000 and cells.output == ["results/regions/demo/cells.json"]


def test_an_input_read_from_a_checkpoint_lists_its_cells(workdir):
    cells = ["E0001S0001", "E0002S0001"]
    write_cell_list(workdir / "results/regions/demo/cells.json", "demo", 10000, cells)
    smk = mock_snakemake("merge_detections", configfiles="config/demo.yaml", root=workdir, region="demo", period="2024")
    assert smk.input.chip_scores == [f"results/regions/demo/2024/chip_scores/{c}.npz" for c in cells]
    assert smk.input.cells == "results/regions/demo/cells.json"
    assert smk.output == ["results/detections/demo/2024.geojson"]
    assert smk.params.latest and smk.params.period == {"name": "2024", "start": "2024-01-01", "end": "2024-12-31"}
    track = mock_snakemake("track_changes", configfiles="config/demo.yaml", root=workdir, region="demo")
    periods = ["2021", "2022", "2023", "2024"]
    assert smk.input.cells == track.input.cells
    assert track.input.chip_scores == [f"results/regions/demo/{p}/chip_scores/{c}.npz" for p in periods for c in cells]
    assert track.output.latest == "results/detections/demo.geojson"
    assert list(track.output.changes) == [f"results/change/demo/{p}.geojson" for p in periods]


def test_a_checkpoint_not_yet_run_is_named(workdir):
    with pytest.raises(ValueError, match=r"checkpoint output .*results/regions/demo/cells.json.* does not exist"):
        mock_snakemake("merge_detections", configfiles="config/demo.yaml", root=workdir, region="demo", period="2021")


def test_a_bad_rule_or_wildcard_is_named(workdir):
    with pytest.raises(ValueError, match=r"no rule 'detect_tile' .*did you mean 'detect_cell'"):
        mock_snakemake("detect_tile", root=workdir, region="demo", cell="E0001S0001")
    with pytest.raises(ValueError, match=r"rule detect_cell: missing wildcard\(s\) \['cell'\].*region=\.\.\."):
        mock_snakemake("detect_cell", root=workdir, region="demo", period="2024")
    with pytest.raises(ValueError, match=r"unknown wildcard\(s\) \['tile'\]"):
        mock_snakemake("detect_cell", root=workdir, region="demo", period="2024", cell="E0001S0001", tile="E0001S0001")
    with pytest.raises(ValueError, match=r"wildcard cls='both' does not match its constraint"):
        mock_snakemake("fetch_training_images", root=workdir, cls="both")


def test_script_args_reads_wildcards_and_configfiles():
    assert script_args(["--configfile", "a.yaml", "region=demo", "--configfile=b.yaml", "cell=E1N1"]) == {
        "configfiles": ["a.yaml", "b.yaml"],
        "region": "demo",
        "cell": "E1N1",
    }
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        script_args(["demo"])


def test_a_rule_script_runs_standalone(workdir):
    """python scripts/positive_points.py --configfile ...: the rule's outputs and log, without Snakemake."""
    (workdir / "mines.csv").write_text("longitude,latitude,name\n-56.1,-6.2,a\n-56.2,-6.3,b\n-56.2,-6.3,b again\n")
    (workdir / "points.yaml").write_text("positives:\n  points:\n    - {path: mines.csv, source: mines}\n")
    proc = subprocess.run(
        [sys.executable, "scripts/positive_points.py", "--configfile", "points.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = (workdir / "results/points/positive.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("point_id")  # the duplicate dropped
    assert "2 usable points" in (workdir / "logs/positive_points.log").read_text()
    # the dropped duplicate is accounted for in the rejected rows, naming the point it repeats
    rejected = (workdir / "results/points/positive_rejected.csv").read_text()
    assert re.search(r"mines,mines-\d+,-56\.2,-6\.3,same place as point mines-\d+ \(kept\)", rejected), rejected


def test_a_standalone_script_names_a_missing_input_or_config_file_without_a_traceback(workdir, tmp_path_factory):
    """Inputs the workflow has not made yet, a cell the region does not have, a config file typed relative to
    another folder: one line saying what to do, exit status 1, nothing written."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "extra.yaml").write_text("detection:\n  threshold: 0.7\n")
    script = workdir / "scripts" / "positive_stats.py"
    runs = {
        "missing input": ([sys.executable, str(script), "--configfile", "config/demo.yaml"], workdir),
        # the config file is found from the folder the command was typed in, not the workflow's
        "config from cwd": (
            [
                sys.executable,
                str(script),
                "--configfile",
                str(workdir / "config/demo.yaml"),
                "--configfile",
                "nope.yaml",
            ],
            elsewhere,
        ),
    }
    outs = {}
    for name, (cmd, cwd) in runs.items():
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, (name, proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        outs[name] = proc.stderr
    assert re.search(
        r"input \[.*results/training_images/positive_index\.csv.*\] does not exist; make it first",
        outs["missing input"],
    )
    assert "snakemake results/training_images/positive_index.csv" in outs["missing input"]
    assert re.search(
        rf"config file\(s\) \['{re.escape(str(elsewhere / 'nope.yaml'))}'\] not found", outs["config from cwd"]
    )
    assert not (workdir / "results/stats/positive.json").exists()
