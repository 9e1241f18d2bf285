"""The release bundle's documents: STAC items (real recorded answers), pinned inputs (real downloaded bytes
against the config's pins), Wilson intervals, the model card and the sha256 manifest."""

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pystac
import pytest
import yaml

from garimpo.errors import InputDataError
from garimpo.imagery.provenance import provenance
from garimpo.publish.bundle import (
    attribution_text,
    inputs_table,
    model_card,
    software_versions,
    stac_items_table,
    wilson_interval,
)
from garimpo.publish.manifest import (
    MANIFEST,
    add_to_manifest,
    set_aside_if_changed,
    verify_manifest,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[1]


def test_wilson_interval_matches_the_textbook_values():
    # 8 of 10: Wilson 95 % interval 0.490-0.943 (Brown, Cai & DasGupta 2001, eq. 4, z = 1.96).
    assert wilson_interval(8, 10) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17  # never a degenerate [0, 0] as the normal approximation gives
    assert wilson_interval(0, 0) is None


def test_stac_items_from_real_recorded_planetary_computer_answers(tmp_path, shared_dir):
    page = json.loads(
        (shared_dir / "data/stac-real/planetary-computer_search_sentinel-2-l2a_2019-01-01.json").read_text()
    )
    items = [pystac.Item.from_dict(f) for f in page["features"][:3]]
    meta = {**provenance(items), "source": {"kind": "planetary_computer", "collection": "sentinel-2-l2a"}}
    path = tmp_path / "2019" / "composites" / "E1N1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(meta))
    empty = tmp_path / "2020" / "composites" / "E1N1.json"
    empty.parent.mkdir(parents=True)
    empty.write_text(json.dumps({"scene_ids": [], "dates": [], "cloud_cover": [], "radiometry": []}))
    table = stac_items_table([("2019", "E1N1", path), ("2020", "E1N1", empty)])
    rows = table[table.period == "2019"]
    assert list(rows.item_id) == [f["id"] for f in page["features"][:3]]
    assert list(rows.date) == [f["properties"]["datetime"][:10] for f in page["features"][:3]]
    assert list(rows.cloud_cover) == [f["properties"]["eo:cloud_cover"] for f in page["features"][:3]]
    assert set(rows.source) == {"planetary_computer/sentinel-2-l2a"}
    # 2019 scenes predate processing baseline 04.00: no -0.1 offset (DOMAIN.md).
    assert set(rows.offset.dropna()) <= {0.0}
    # A cell with no usable scene in a period is still listed, with no item.
    assert list(table[table.period == "2020"].item_id) == [""]


def test_a_broken_composite_sidecar_is_named(tmp_path):
    bad = tmp_path / "E1N1.json"
    bad.write_text("{not json")
    with pytest.raises(InputDataError, match="E1N1.json.*delete it and rerun"):
        stac_items_table([("2024", "E1N1", bad)])


def test_pinned_inputs_take_url_and_licence_from_the_config_and_hash_the_real_bytes(tmp_path, shared_dir):
    downloads = yaml.safe_load((ROOT / "config/config.yaml").read_text())["downloads"]["files"]
    folder = tmp_path / "resources" / "downloads"
    folder.mkdir(parents=True)
    name = "yanomami_and_munduruku.geojson"
    shutil.copy(shared_dir / "data/amw/boundaries" / name, folder / name)
    own = tmp_path / "my_points.csv"
    own.write_text("lon,lat\n-56.1,-6.2\n")
    table = inputs_table([("regions.yanomami", folder / name), ("positives.points[0]", own)], downloads)
    pinned = table.set_index("key").loc["regions.yanomami"]
    # The real file's bytes hash to the pin the config was written with.
    assert pinned.sha256 == downloads[name]["sha256"]
    assert pinned.url == downloads[name]["url"] and pinned.licence == "CC-BY-4.0"
    assert "Amazon Mining Watch" in pinned.attribution
    mine = table.set_index("key").loc["positives.points[0]"]
    assert mine.url == "" and mine.bytes == own.stat().st_size
    text = attribution_text("2023", "2025", table)
    assert "Copernicus Sentinel data [2023-2025]" in text
    assert f"{name}: Earth Genome, Amazon Mining Watch" in text and "CC-BY-4.0" in text
    synthetic = attribution_text("2021", "2024", table, copernicus=False)
    assert "Copernicus Sentinel data [" not in synthetic and "synthetic demo world" in synthetic
    with pytest.raises(InputDataError, match="negatives.urban_mask: .*does not exist"):
        inputs_table([("negatives.urban_mask", tmp_path / "nowhere.geojson")], downloads)


def test_a_folder_input_is_pinned_file_by_file(tmp_path):
    chips = tmp_path / "chips"
    (chips / "positive").mkdir(parents=True)
    (chips / "positive" / "a.tif").write_bytes(b"a")
    (chips / "b.tif").write_bytes(b"bb")
    table = inputs_table([("positives.local_dirs[0]", chips)], {})
    assert [Path(p).name for p in table.path] == ["b.tif", "a.tif"]
    assert list(table.bytes) == [2, 1]


def _summary():
    return {
        "model_id": "abc123",
        "classifier": {"arch": "resnet34", "dropout": 0.5, "weights": "imagenet", "input_size": 96},
        "bands_model_order": ["B04", "B03", "B02"],
        "data": {
            "n_train": 120,
            "n_train_pos": 60,
            "n_train_neg": 60,
            "n_train_augmented": 100,
            "n_val": 30,
            "n_val_pos": 10,
            "n_val_neg": 20,
        },
        "threshold": 0.4,
        "threshold_tta": 0.45,
        "threshold_method": "max_f1",
        "val_metrics": {"tp": 8, "fp": 1, "tn": 19, "fn": 2, "f1": 0.8421},
        "epochs_run": 12,
        "stop_reason": "early_stopping",
        "best_epoch": 2,
        "device": "cpu",
        "threads": 2,
        "train_minutes": 1.5,
    }


def test_model_card_gives_counts_threshold_and_intervals():
    heldout = {
        "n": 500,
        "precision": 0.9,
        "recall": 0.8,
        "f1": 0.847,
        "specificity": 0.95,
        "ci": {"level": 0.95, "resamples": 1000, "f1": [0.8, 0.89], "precision": [0.85, 0.94]},
    }
    card = model_card(_summary(), {"heldout": heldout}, {"precision": 0.875})
    assert "`abc123`" in card and "resnet34" in card and "B04, B03, B02" in card
    assert "0.4000" in card and "max_f1" in card
    assert "| precision | 0.889 | 0.565–0.980 | 8 / 9 |" in card  # Wilson 95 % of 8/9
    assert "| recall (sensitivity) | 0.800 | 0.490–0.943 | 8 / 10 |" in card
    assert "## Held-out chip set `heldout` (500 chips)" in card and "| f1 | 0.847 | 0.800–0.890 |" in card
    for section in ("## Training data and split", "## Intended use", "## Known failure modes"):
        assert section in card
    with pytest.raises(InputDataError, match="lacks 'data'"):
        model_card({k: v for k, v in _summary().items() if k != "data"})


def test_manifest_is_checked_by_sha256sum_and_finds_every_change(tmp_path):
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "d-00001.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "demo.csv").write_text("id\nd-00001\n")
    write_manifest(tmp_path)
    lines = (tmp_path / MANIFEST).read_text().splitlines()
    assert [ln.split("  ")[1] for ln in lines] == ["demo.csv", "evidence/d-00001.png"]
    assert verify_manifest(tmp_path) == []
    # The format is sha256sum's: a user checks a bundle with standard tools.
    check = subprocess.run(["sha256sum", "-c", MANIFEST], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path / "demo.csv").write_text("id\nd-00002\n")
    (tmp_path / "evidence" / "d-00001.png").unlink()
    (tmp_path / "extra.txt").write_text("x")
    assert verify_manifest(tmp_path) == ["changed: demo.csv", "missing: evidence/d-00001.png", "not listed: extra.txt"]


def test_software_versions_name_the_commit_and_the_libraries():
    info = software_versions(ROOT, ("numpy", "no-such-package-xyz"))
    assert info["packages"]["no-such-package-xyz"] == "not installed"
    assert info["packages"]["numpy"].count(".") >= 1
    assert info["gdal"] and info["proj"]
    if (ROOT / ".git").exists():
        assert len(info["workflow"]["commit"]) == 40 and isinstance(info["workflow"]["dirty"], bool)


def test_the_manifest_tool_adds_the_report_only_to_an_unchanged_bundle(tmp_path):
    """The user test's finding: rewriting the manifest blessed a bundle whose files had been deleted or edited.
    Now the report joins only a bundle whose other files are as written, and a changed bundle is set aside
    (nothing deleted) so that the workflow writes it anew."""
    bundle = tmp_path / "demo"
    (bundle / "evidence").mkdir(parents=True)
    (bundle / "evidence" / ".snakemake_timestamp").write_text("")  # Snakemake's, not the bundle's
    (bundle / "evidence" / "d-1.png").write_bytes(b"png")
    (bundle / "demo.csv").write_text("id\nd-1\n")
    write_manifest(bundle)
    assert "evidence/.snakemake_timestamp" not in (bundle / MANIFEST).read_text()
    tool = [str(Path(__import__("sys").executable)), str(ROOT / "scripts/publish_manifest.py"), str(bundle)]
    assert subprocess.run([*tool, "--check"], capture_output=True).returncode == 0
    (bundle / "report.zip").write_bytes(b"zip")
    out = subprocess.run([*tool, "--check"], capture_output=True, text=True)
    assert out.returncode == 1 and "not listed: report.zip" in out.stdout
    assert subprocess.run([*tool, "--add", "report.zip"], capture_output=True).returncode == 0
    assert subprocess.run([*tool, "--check"], capture_output=True).returncode == 0
    # an edited table: the report is not added over it, and the message says what to do
    (bundle / "report.zip").write_bytes(b"zip, newer")
    (bundle / "demo.csv").write_text("id\nd-1\nd-99999\n")
    out = subprocess.run([*tool, "--add", "report.zip"], capture_output=True, text=True)
    assert out.returncode == 1 and "changed: demo.csv" in out.stderr and "make publish" in out.stderr
    with pytest.raises(ValueError, match="changed: demo.csv"):
        add_to_manifest(bundle, ["report.zip"])
    # --prepare moves the changed bundle aside, whole; an unchanged one (report aside) stays
    out = subprocess.run([*tool, "--prepare"], capture_output=True, text=True)
    assert out.returncode == 0 and "changed: demo.csv" in out.stdout and not bundle.exists()
    (aside,) = tmp_path.glob("demo.changed-*")
    assert (aside / "demo.csv").read_text().endswith("d-99999\n") and (aside / "evidence" / "d-1.png").exists()
    (aside / "demo.csv").write_text("id\nd-1\n")
    (aside / "report.zip").write_bytes(b"a report built again")
    assert set_aside_if_changed(aside, ignore=["report.zip"]) == ([], None) and aside.exists()
    (aside / "evidence" / "d-1.png").unlink()
    problems, moved = set_aside_if_changed(aside, ignore=["report.zip"])
    assert problems == ["missing: evidence/d-1.png"] and moved is not None and moved.exists()


def test_demo_bundle_attribution_claims_no_copernicus_data(tmp_path):
    """The user test's finding: the demo's ATTRIBUTION.md claimed Copernicus data (params.synthetic was not
    passed on). The rule script writes the banner and the attribution from the rule's params."""
    text = (ROOT / "scripts/release_bundle.py").read_text()
    assert "copernicus=not smk.params.synthetic" in text and "SYNTHETIC if smk.params.synthetic" in text
    demo = attribution_text("2021", "2024", pd.DataFrame(columns=["path", "attribution", "licence"]), copernicus=False)
    assert "Copernicus Sentinel data [" not in demo and "synthetic demo world" in demo
