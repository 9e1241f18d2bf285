"""The footprint and radiometric contract: training images, checkpoint, detection and evaluation agree."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio  # noqa: F401  (filterwarnings names rasterio.errors)
import torch
from affine import Affine
from conftest import EPSG, ORIGIN
from PIL import Image
from test_cli_config import _merged  # the shipped files layered as --configfile layers them
from torch import nn

from garimpo.classifier.evaluation import chip_set_contract, load_chip_set
from garimpo.classifier.infer import predict_proba
from garimpo.contract import (
    ENCODINGS,
    RESIZE,
    ImageContract,
    check_chips,
    check_composite,
    checkpoint_record,
    common_contract,
    image_folder,
    read_training_image_contract,
)
from garimpo.detection.chip_scores import chip_features, chip_polygons
from garimpo.detection.chips import composite_chip_px, prepare_chips
from garimpo.detection.polygons import area_ha
from garimpo.detection.scan import brute_force_scan
from garimpo.errors import ContractError, InputDataError
from garimpo.geo.raster import read_raster, write_raster
from garimpo.training.images import fetch_training_images, import_local_images

ROOT = Path(__file__).resolve().parents[1]
RGB = ["B04", "B03", "B02"]
STATS = {
    "bands": {"B04": {"p2": 0.02, "p98": 0.20}, "B03": {"p2": 0.03, "p98": 0.15}, "B02": {"p2": 0.01, "p98": 0.12}}
}
L2A = {"source": {"kind": "planetary_computer", "collection": "sentinel-2-l2a"}}


def _meta(footprint_m=480.0, pixel_size_m=10.0, units="surface_reflectance", input_size=96, **extra):
    """Checkpoint meta of a model trained on ``footprint_m`` chips (what train_classifier records)."""
    contract = checkpoint_record(ImageContract(footprint_m, pixel_size_m, units))
    return {
        "model_id": "m0",
        "arch": "resnet18",
        "bands": RGB,
        "input_size": input_size,
        "in_channels": 3,
        "dropout": 0.0,
        "low": [STATS["bands"][b]["p2"] for b in RGB],
        "high": [STATS["bands"][b]["p98"] for b in RGB],
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "threshold": 0.5,
        **contract,
        **extra,
    }


def _composite(path, size=144, res=10.0, seed=0):
    """A float reflectance composite (bands B04, B03, B02) on a real UTM grid at ``res`` metres."""
    arr = np.random.default_rng(seed).uniform(0.01, 0.25, (3, size, size)).astype(np.float32)
    return write_raster(path, arr, EPSG, Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]), RGB)


# ---------------------------------------------------------------- the encoding table and folder specs


def test_amw_encoding_decodes_to_toa_reflectance():
    enc = ENCODINGS["amw_l1c_rgb"]
    assert enc.units == "toa_reflectance" and enc.bands == ("B04", "B03", "B02")
    np.testing.assert_allclose(enc.decode(np.array([0, 85, 255], np.uint8)), [0.0, 0.1, 0.3], rtol=1e-6)
    assert "3000" in enc.source and "/ 255 * 0.3" in enc.formula


def test_folder_spec_is_a_path_or_a_mapping():
    assert image_folder("a/b").path == Path("a/b") and image_folder("a/b").encoding is None
    f = image_folder({"path": "chips", "encoding": "amw_l1c_rgb", "pixel_size_m": 10}, "positives.local_dirs")
    assert (f.encoding, f.pixel_size_m, f.key) == ("amw_l1c_rgb", 10.0, "positives.local_dirs")
    with pytest.raises(InputDataError, match="positives.local_dirs.*'png8'.*amw_l1c_rgb"):
        image_folder({"path": "chips", "encoding": "png8"}, "positives.local_dirs")
    with pytest.raises(InputDataError, match="unknown keys"):
        image_folder({"path": "chips", "scale": 3}, "k")


# ---------------------------------------------------------------- importing real AMW chips


def _real_chips(shared_dir, tmp_path, n=3):
    """A few real Amazon Mining Watch chips (8-bit PNG) copied into a folder of their own."""
    folder = tmp_path / "amw" / "positive"
    folder.mkdir(parents=True)
    for png in sorted((shared_dir / "data/amw-chips/positive").glob("*.png"))[:n]:
        shutil.copy(png, folder / png.name)
    return folder


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # PNG chips have no georeferencing
def test_real_amw_chips_import_as_toa_reflectance(shared_dir, tmp_path):
    folder = _real_chips(shared_dir, tmp_path)
    spec = {"path": str(folder), "encoding": "amw_l1c_rgb", "pixel_size_m": 10}
    idx = import_local_images([spec], tmp_path / "images", key="positives.local_dirs")
    assert len(idx) == 3 and (idx.units == "toa_reflectance").all() and (idx.footprint_m == "480").all()
    for rec in idx.to_dict("records"):
        image = read_raster(rec["path"])
        png = np.asarray(Image.open(folder / (rec["image_id"].split("-positive-")[1] + ".png")).convert("RGB"))
        assert image.band_names == ("B04", "B03", "B02") and image.array.shape == (3, 48, 48)
        # TOA reflectance = value / 255 * 0.3, in float32
        np.testing.assert_allclose(image.array, png.transpose(2, 0, 1) / 255 * 0.3, rtol=1e-6)
        assert 0 < image.array.max() <= 0.3 + 1e-7
        assert image.tags["units"] == "toa_reflectance" and image.tags["encoding"] == "amw_l1c_rgb"
        assert read_training_image_contract(rec["path"]) == ImageContract(480.0, 10.0, "toa_reflectance", "amw_l1c_rgb")
    # Without a declared encoding the 8-bit chips are refused, naming the folder and the key to set.
    with pytest.raises(InputDataError, match=rf"{folder}.*8-bit.*positives\.local_dirs.*encoding: amw_l1c_rgb"):
        import_local_images([str(folder)], tmp_path / "images2", key="positives.local_dirs")
    # Without a pixel size there is no footprint: refused too.
    with pytest.raises(InputDataError, match=r"no georeferencing in metres.*positives\.local_dirs"):
        import_local_images(
            [{"path": str(folder), "encoding": "amw_l1c_rgb"}], tmp_path / "t3", key="positives.local_dirs"
        )


def test_local_geotiffs_take_their_pixel_size_from_the_georeferencing(tmp_path):
    folder = tmp_path / "tifs"
    arr = np.full((3, 32, 32), 0.1, np.float32)
    write_raster(folder / "a.tif", arr, EPSG, Affine(20, 0, ORIGIN[0], 0, -20, ORIGIN[1]), RGB)
    idx = import_local_images([folder], tmp_path / "out")  # a plain path of GeoTIFFs keeps working
    assert read_training_image_contract(idx.path[0]) == ImageContract(640.0, 20.0, "surface_reflectance")
    with pytest.raises(InputDataError, match="declares pixel_size_m 10"):
        import_local_images([{"path": folder, "pixel_size_m": 10}], tmp_path / "out2")


def test_fetched_training_images_record_footprint_pixel_size_and_units(tiny_catalog, tmp_path):
    from garimpo.geo.raster import Grid
    from garimpo.imagery.stac import ImageryRequest, Source

    path, _ = tiny_catalog
    g = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 64, 64)
    lon, lat = (g.bbox_lonlat()[0] + g.bbox_lonlat()[2]) / 2, (g.bbox_lonlat()[1] + g.bbox_lonlat()[3]) / 2
    pts = pd.DataFrame({"point_id": ["p1"], "lon": [lon], "lat": [lat], "source": ["t"], "name": [""]})
    idx = fetch_training_images(
        pts,
        Source.from_config({"kind": "local", "url": str(path)}),
        ImageryRequest(("B04",), ("2021-01-01", "2025-12-31"), 20),
        320,
        tmp_path / "out",
        tmp_path / "cache",
    )
    assert read_training_image_contract(idx.path[0]) == ImageContract(320.0, 10.0, "surface_reflectance")
    assert (idx.footprint_m[0], idx.pixel_size_m[0], idx.units[0]) == ("320", "10", "surface_reflectance")


# ---------------------------------------------------------------- training refuses mixed images


def test_images_of_other_footprints_are_refused_unless_within_half_a_pixel():
    a = ImageContract(480.0, 10.0, "surface_reflectance")
    assert common_contract([("x", a), ("y", ImageContract(484.0, 10.0, "surface_reflectance"))], "images") == a
    with pytest.raises(InputDataError, match=r"2 kinds.*480 m chips at 10 m.*\['x'\].*640 m chips.*\['z'\]"):
        common_contract([("x", a), ("z", ImageContract(640.0, 10.0, "surface_reflectance"))], "images")
    with pytest.raises(InputDataError, match="at 20 m"):  # same ground, other pixel size
        common_contract([("x", a), ("z", ImageContract(480.0, 20.0, "surface_reflectance"))], "images")
    with pytest.raises(InputDataError, match="toa_reflectance"):  # same ground, other kind of values
        common_contract([("x", a), ("z", ImageContract(480.0, 10.0, "toa_reflectance", "amw_l1c_rgb"))], "images")


def test_training_refuses_images_of_two_footprints(tmp_path, monkeypatch):
    from garimpo.classifier.train import train_classifier

    monkeypatch.chdir(tmp_path)
    rows = []
    for i, (split, label, size) in enumerate([("train", 1, 48), ("train", 0, 64), ("val", 1, 48), ("val", 0, 48)]):
        p = write_raster(
            f"t{i}.tif",
            np.full((3, size, size), 0.1, np.float32),
            EPSG,
            Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
            RGB,
            tags=ImageContract(size * 10.0, 10.0, "surface_reflectance").tags(),
        )
        rows.append({"path": str(p), "label": label, "split": split, "augmented": False})
    pd.DataFrame(rows).to_csv("split.csv", index=False)
    (tmp_path / "stats.json").write_text(pd.Series(STATS).to_json())
    with pytest.raises(InputDataError, match=r"training images of split.csv are of 2 kinds.*480 m.*t0.tif.*640 m.*t1"):
        train_classifier("split.csv", "stats.json", "model", {"arch": "resnet18", "weights": "none", "bands": RGB})


# ---------------------------------------------------------------- detection: refused before any scan


def test_images_of_two_kinds_stop_where_the_training_images_are_made(tmp_path):
    """Fetched L2A training images plus declared TOA chips in one class (the user test's case): refused by
    fetch_training_images and split_and_augment, before statistics mix them and before training would replace an
    existing model."""
    from garimpo.contract import index_contract

    csv = tmp_path / "positive_index.csv"
    pd.DataFrame(
        [
            {
                "path": "a.tif",
                "status": "ok",
                "footprint_m": 640,
                "pixel_size_m": 10,
                "units": "surface_reflectance",
                "encoding": "",
            },
            {
                "path": "b.tif",
                "status": "no_imagery",
                "footprint_m": "",
                "pixel_size_m": "",
                "units": "",
                "encoding": "",
            },
            {
                "path": "c.tif",
                "status": "ok",
                "footprint_m": 640.0,
                "pixel_size_m": 10.0,
                "units": "surface_reflectance",
                "encoding": "",
            },
        ]
    ).to_csv(csv, index=False)
    rows = pd.read_csv(csv, keep_default_na=False, na_values=[""]).to_dict("records")  # as the rules read it
    assert index_contract(rows, "the positive training images") == ImageContract(640.0, 10.0, "surface_reflectance")
    chip = {
        "path": "png.tif",
        "status": "ok",
        "footprint_m": 480.0,
        "pixel_size_m": 10.0,
        "units": "toa_reflectance",
        "encoding": "amw_l1c_rgb",
    }
    with pytest.raises(InputDataError, match=r"images are of 2 kinds: 2 x 640 m.*1 x 480 m.*amw_l1c_rgb"):
        index_contract([*rows, chip], "the positive training images")
    with pytest.raises(InputDataError, match="a.tif records no footprint_m.*snakemake -R fetch_training_images"):
        index_contract([{"path": "a.tif", "status": "ok"}], "the negative training images")


def test_detection_refuses_a_model_that_does_not_fit_the_config_or_composite(tmp_path):
    composite = _composite(tmp_path / "composite.tif")
    assert composite_chip_px(_meta(), composite, L2A, 480) == 48
    assert composite_chip_px(_meta(), composite, L2A, 484) == 48  # within half a pixel
    with pytest.raises(
        ContractError,
        match="model trained on 480 m chips at 10 m; config chips.size_m is 5000: set chips.size_m: 480 or retrain",
    ):
        composite_chip_px(_meta(), composite, L2A, 5000)
    coarse = _composite(tmp_path / "coarse.tif", size=24, res=20.0)
    with pytest.raises(ContractError, match=r"10 m pixels; composite .*coarse.tif.* has 20 m pixels"):
        composite_chip_px(_meta(), coarse, L2A, 480)
    toa = _meta(units="toa_reflectance", encoding=ENCODINGS["amw_l1c_rgb"].record())
    with pytest.raises(
        ContractError,
        match=r"expects toa_reflectance \(decoded from amw_l1c_rgb\) but composite .*"
        r"sentinel-2-l2a.* is surface_reflectance; no conversion",
    ):
        composite_chip_px(toa, composite, L2A, 480)
    with pytest.raises(ContractError, match="expects surface_reflectance"):  # the reverse: an L1C composite
        composite_chip_px(_meta(), composite, {"source": {"collection": "sentinel-2-l1c"}}, 480)
    old = {k: v for k, v in _meta().items() if k not in ("footprint_m", "units")}
    with pytest.raises(ContractError, match="trained before the footprint and units contract.*retrain"):
        composite_chip_px(old, composite, L2A, 480)
    with pytest.raises(ContractError, match="resized with"):
        composite_chip_px(_meta(resize={**RESIZE, "method": "nearest"}), composite, L2A, 480)
    # Every disagreement is named at once.
    with pytest.raises(ContractError, match="chips.size_m is 640.*expects toa_reflectance"):
        check_composite(toa, 640, 10.0, "surface_reflectance")


class _SizeRecorder(nn.Module):
    """A tiny classifier that remembers the input sizes it was given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
        )
        self.sizes = set()

    def forward(self, x):
        self.sizes.add(tuple(x.shape[-2:]))
        return self.net(x)


def test_detection_chips_cover_the_training_footprint(tmp_path):
    """A model trained on 480 m chips scans a 10 m composite with 48 px chips, resized to its 96 px input as
    in training; each chip's polygon is 480 m x 480 m: 23.04 ha."""
    composite = _composite(tmp_path / "composite.tif")
    meta, model = _meta(input_size=96), _SizeRecorder().eval()
    chip = composite_chip_px(meta, composite, L2A, 480)
    result = brute_force_scan(composite, model, meta, chip_px=chip, stats=STATS, channels_last=False, exact_match=True)
    assert result.chip_px == 48 and result.stride == 24 and model.sizes == {(96, 96)}
    assert brute_force_scan(composite, model, meta, stats=STATS).chip_px == 48  # the scan's own default agrees
    # Scores are those of the 48 px chips matched and resized by preprocess, as training images were.
    chips = prepare_chips(read_raster(composite), list(zip(result.rows, result.cols)), 48, STATS, RGB)
    np.testing.assert_allclose(result.scores, predict_proba(model, meta, chips), atol=1e-5)

    result.scores[:] = 0.0
    result.scores[0] = 1.0  # one positive chip, at the composite's top-left corner
    (square,) = chip_features(result, 0.5, {"model_id": "m0"})
    from garimpo.geo.geojson import reproject

    x0, y0, x1, y1 = reproject(square["geometry"], "EPSG:4326", EPSG).bounds
    assert (x1 - x0, y1 - y0) == (pytest.approx(480, abs=0.01), pytest.approx(480, abs=0.01))
    assert area_ha(square["geometry"]) == pytest.approx(23.04, rel=2e-3)  # geodesic vs UTM scale
    (poly,) = chip_polygons(result, 0.5)
    assert poly["area_km2"] == pytest.approx(0.2304) and poly["n_chips"] == 1


def test_merged_detection_area_follows_the_footprint(tmp_path):
    from garimpo.detection.polygons import merge_cells
    from garimpo.geo.cells import region_cells

    composite = _composite(tmp_path / "composite.tif")
    meta = _meta()
    result = brute_force_scan(composite, _SizeRecorder().eval(), meta, stats=STATS)
    result.scores[:] = 0.0
    result.scores[0] = result.scores[1] = 0.9  # overlapping neighbours, half a chip apart: 480 m x 720 m
    feats = chip_features(
        result, 0.5, {"model_id": "m0", "scene_ids": ["s"], "dates": ["2024-01-01"], "config_hash": "c"}
    )
    (cell,) = region_cells(feats[0]["geometry"].union(feats[1]["geometry"]), 100_000)
    (det,) = merge_cells({cell: feats}, 100_000, 0.5, 0.95)
    assert det["properties"]["area_ha"] == pytest.approx(480 * 720 / 1e4, rel=2e-3)


# ---------------------------------------------------------------- evaluation: chip sets of the model's kind


@pytest.mark.shared
def test_chip_set_of_real_amw_chips_fits_only_a_model_of_its_kind(shared_dir, tmp_path):
    folder = _real_chips(shared_dir, tmp_path).parent  # .../amw with positive/
    paths = load_chip_set(folder)["path"]
    with pytest.raises(InputDataError, match=rf"{folder}.*8-bit.*evaluation\.chip_sets\.amw.*encoding"):
        chip_set_contract(paths, image_folder(str(folder), "evaluation.chip_sets.amw"))
    spec = image_folder(
        {"path": str(folder), "encoding": "amw_l1c_rgb", "pixel_size_m": 10}, "evaluation.chip_sets.amw"
    )
    chips = chip_set_contract(paths, spec)
    assert chips == ImageContract(480.0, 10.0, "toa_reflectance", "amw_l1c_rgb")
    toa = _meta(units="toa_reflectance", encoding=ENCODINGS["amw_l1c_rgb"].record())
    check_chips(toa, chips, "chip set amw")
    with pytest.raises(ContractError, match="expects surface_reflectance but chip set amw is toa_reflectance"):
        check_chips(_meta(), chips, "chip set amw")
    with pytest.raises(ContractError, match="model trained on 640 m chips.*chip set amw holds 480 m chips"):
        check_chips(_meta(640.0, units="toa_reflectance", encoding=None), chips, "chip set amw")
    with pytest.raises(ContractError, match="trained before"):
        check_chips({"model_id": "old", "input_size": 96}, chips, "chip set amw")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_workflow_built_chip_sets_carry_their_contract_in_tags(tmp_path):
    """results/heldout lists matched training images: un-georeferenced decoded chips still say 480 m at 10 m."""
    tags = ImageContract(480.0, 10.0, "toa_reflectance", "amw_l1c_rgb").tags()
    for label in ("positive", "negative"):
        write_raster(
            tmp_path / label / "c.tif", np.full((3, 48, 48), 0.1, np.float32), None, Affine.identity(), RGB, tags=tags
        )
    chips = chip_set_contract(load_chip_set(tmp_path)["path"], image_folder(str(tmp_path), "evaluation.chip_sets.h"))
    assert chips == ImageContract(480.0, 10.0, "toa_reflectance", "amw_l1c_rgb")


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "overlays",
    [(), ("demo.yaml",), ("amw.yaml",), ("amw.yaml", "amw_transfer_check.yaml"), ("amw.yaml", "amw_all.yaml")],
)
def test_shipped_configs_keep_the_contract(overlays):
    """Training images, detection chips and declared local chips show the same ground in every shipped config."""
    from snakemake.utils import validate

    config = _merged("config.yaml", *overlays)
    validate(config, str(ROOT / "config" / "schema.yaml"))
    size_m, det = config["chips"]["size_m"], config["detection"]
    chip_px = size_m / 10  # fetched training images and detection composites are 10 m
    assert chip_px == int(chip_px) and (det["stride_px"] or chip_px / 2) <= chip_px
    for cls in ("positives", "negatives"):
        for item in config[cls]["local_dirs"]:
            folder = image_folder(item, f"{cls}.local_dirs")
            if "amw-chips" in str(folder.path):  # 48 px 8-bit chips: their encoding and 480 m declared
                assert folder.encoding == "amw_l1c_rgb" and 48 * folder.pixel_size_m == size_m
    if not overlays:
        assert (size_m, config["classifier"]["input_size"], det["stride_px"]) == (480, 96, 24)
    if overlays == ("demo.yaml",):
        assert chip_px == config["classifier"]["input_size"] == 64


def test_mapping_forms_from_the_command_line_are_typed():
    from snakemake.cli import parse_config
    from snakemake.utils import update_config, validate

    from garimpo.config import coerce_config

    config = _merged("config.yaml", "amw.yaml")
    update_config(
        config,
        parse_config(
            [
                "evaluation={chip_sets: {mine: {path: /x/chips, encoding: amw_l1c_rgb, pixel_size_m: 10}, plain: /y}}",
                "negatives={local_dirs: [{path: /z, encoding: null, pixel_size_m: 20}, /w]}",
            ]
        ),
    )
    coerce_config(config, ROOT / "config" / "schema.yaml")
    validate(config, str(ROOT / "config" / "schema.yaml"))
    assert config["evaluation"]["chip_sets"]["mine"]["pixel_size_m"] == 10
    assert config["evaluation"]["chip_sets"]["plain"] == "/y"
    assert config["negatives"]["local_dirs"] == [{"path": "/z", "encoding": None, "pixel_size_m": 20}, "/w"]


def test_schema_lists_exactly_the_known_encodings():
    """An unknown encoding is refused when the config is validated, before any job runs."""
    import yaml

    text = (ROOT / "config" / "schema.yaml").read_text()
    enums = [
        node["enum"]
        for node in _walk(yaml.safe_load(text))
        if "enum" in node and None in node["enum"] and "amw_l1c_rgb" in node["enum"]
    ]
    assert len(enums) == 3 and all(set(e) == {*ENCODINGS, None} for e in enums)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)
