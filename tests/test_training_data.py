import json
import os

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from conftest import EPSG, ORIGIN
from shapely.geometry import box

from garimpo.classifier.evaluation import load_chip_set
from garimpo.errors import EmptyRegionError, InputDataError
from garimpo.geo.geojson import EARTH_RADIUS_M, geodesic_area_ha
from garimpo.geo.raster import read_raster, write_raster
from garimpo.pixels.matching import image_percentiles, stretch_to_reference
from garimpo.pixels.stats import BandReservoir, band_statistics
from garimpo.training.augment import AugmentParams, augment
from garimpo.training.images import import_local_images, match_training_images, split_and_augment, write_chip_manifest
from garimpo.training.negatives import sample_negative_points, sampling_area
from garimpo.training.points import check_coordinates, load_points
from garimpo.training.split import assign_split, held_out, spatial_groups


def test_points_csv_messy_rows(tmp_path):
    p = tmp_path / "mines.csv"
    p.write_text(
        "name,lat,lon\n"
        "a,-6.25,-56.1\n"
        'b,"-6,30",-56.2\n'  # decimal comma
        "c,-45132,-56.3\n"  # lost decimal point
        "d,,-56.3\n"  # missing
        "e,-56.4,-6.4\n"  # swapped? lat -56 is valid; lon -6.4 is outside the bounds
        "f,abc,-56.1\n"
    )
    good, bad = load_points(p, "lon", "lat", "name", bounds=(-75, -35, -35, 5))
    assert good["name"].tolist() == ["a", "b"]
    assert good["lat"].tolist() == [-6.25, -6.30]
    assert bad["row"].tolist() == [4, 5, 6, 7]  # file line numbers (header is line 1)
    assert "lost decimal point" in bad.iloc[0]["reason"]
    assert "missing" in bad.iloc[1]["reason"]
    assert "outside the study bounds" in bad.iloc[2]["reason"]


def test_points_missing_column_and_no_good_row(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("x,y\n1,2\n")
    with pytest.raises(InputDataError, match=r"column\(s\) \['longitude', 'latitude'\] not found"):
        load_points(p)
    p.write_text("longitude,latitude\n500,500\n")
    with pytest.raises(InputDataError, match="no usable point"):
        load_points(p)
    assert check_coordinates(-6.2, -56.3, None) is None  # valid numbers, caller decides
    assert "swapped" in check_coordinates(-6.2, -120.0, None)


def test_points_geojson(tmp_path):
    p = tmp_path / "m.geojson"
    p.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-56.1, -6.2]}, "properties": {}},
                    {"type": "Feature", "geometry": None, "properties": {}},
                ],
            }
        )
    )
    good, bad = load_points(p)
    assert len(good) == 1 and good.iloc[0]["lon"] == -56.1 and bad.iloc[0]["row"] == 2


def test_reservoir_is_uniform_and_bounded():
    rng = np.random.default_rng(1)
    r = BandReservoir(1000, rng)
    for chunk in np.array_split(np.arange(100_000, dtype=float), 37):
        r.update(chunk)
    assert r.values.size == 1000 and r.seen == 100_000
    # A uniform sample of 0..99999 has its median near 50000 (sd of the sample median ~ 1600).
    assert abs(np.median(r.values) - 50_000) < 6_000
    s = r.summary()
    assert s["mean"] == pytest.approx(49_999.5)
    assert s["std"] == pytest.approx(np.arange(100_000).std(), rel=1e-6)
    assert s["p2"] == pytest.approx(2_000, abs=1_500) and s["p98"] == pytest.approx(98_000, abs=1_500)


def test_band_statistics_small_stream_exact():
    a = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    b = a.copy()
    b[0, 0, 0] = np.nan
    stats = band_statistics([(a, ["B04"]), (b, ["B04"])], sample_size=1000)
    s = stats["bands"]["B04"]
    assert stats["n_images"] == 2 and s["n_samples"] == 199  # NaN ignored, everything fits the reservoir
    assert s["p2"] == pytest.approx(np.percentile(np.concatenate([a.ravel(), b.ravel()[1:]]), 2))


def test_stretch_maps_percentiles_onto_reference():
    rng = np.random.default_rng(0)
    arr = rng.uniform(0.1, 0.5, (2, 50, 50)).astype(np.float32)
    out = stretch_to_reference(arr, np.array([0.0, 1.0]), np.array([1.0, 3.0]))
    lo, hi = image_percentiles(out)
    np.testing.assert_allclose(lo, [0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(hi, [1.0, 3.0], atol=1e-5)
    flat = np.full((1, 5, 5), 0.3, np.float32)
    np.testing.assert_allclose(stretch_to_reference(flat, [0.1], [0.2]), 0.1)  # only shifted, no blow-up


def test_augment_geometry_and_noise():
    arr = np.zeros((3, 8, 8), np.float32)
    arr[:, 0, 0] = 1.0
    rng = np.random.default_rng(3)
    geo_only = AugmentParams(brightness=0, contrast=0, haze_probability=0, noise_sigma=0)
    corners = set()
    for _ in range(40):
        out = augment(arr, rng, geo_only, np.zeros(3), np.ones(3))
        assert out.shape == arr.shape and out.sum() == pytest.approx(3.0)
        corners.add(tuple(np.argwhere(out[0] == 1.0)[0]))
    assert corners == {(0, 0), (0, 7), (7, 0), (7, 7)}  # rotations and flips reach every corner
    noisy = AugmentParams(rotate90=False, flip=False, brightness=0, contrast=0, haze_probability=0, noise_sigma=0.02)
    out = augment(np.zeros((1, 200, 200), np.float32), rng, noisy, np.array([0.0]), np.array([0.5]))
    assert out.std() == pytest.approx(0.01, rel=0.05)  # sigma 0.02 of the 0.5 range
    hazy = AugmentParams(rotate90=False, flip=False, brightness=0, contrast=0, haze_probability=1.0, noise_sigma=0)
    out = augment(np.zeros((1, 4, 4), np.float32), rng, hazy, np.array([0.0]), np.array([1.0]))
    assert 0.1 <= out.mean() <= 0.35


def test_augment_colour_balance():
    rng = np.random.default_rng(5)
    arr = rng.uniform(0.1, 0.5, (3, 6, 6)).astype(np.float32)
    arr[:, 0, 0] = np.nan  # nodata in every band
    arr[1, 0, 1] = np.nan  # nodata in one band only
    plain = dict(rotate90=False, flip=False, brightness=0, contrast=0, haze_probability=0, noise_sigma=0)
    lo, hi = np.zeros(3), np.ones(3)
    gains = set()
    for _ in range(30):
        out = augment(arr, rng, AugmentParams(band_gain=0.2, **plain), lo, hi)
        ratio = out / arr
        per_band = np.nanmean(ratio, axis=(1, 2))
        valid = ~np.isnan(arr)
        expected = np.broadcast_to(per_band[:, None, None], arr.shape)
        np.testing.assert_allclose(ratio[valid], expected[valid], rtol=1e-5)  # one factor a band
        assert ((per_band >= 0.8) & (per_band <= 1.2)).all()
        gains.update(np.round(per_band, 3))
    assert len(gains) > 60  # bands get their own factors
    for _ in range(30):
        out = augment(arr, rng, AugmentParams(saturation=0.3, **plain), lo, hi)
        grey = np.nanmean(arr[:, 1:, :], axis=0)
        np.testing.assert_allclose(np.nanmean(out[:, 1:, :], axis=0), grey, atol=1e-6)  # brightness kept
        factor = (out[:, 1:, :] - grey) / (arr[:, 1:, :] - grey)
        assert 0.7 <= factor.min() and factor.max() <= 1.3 and np.ptp(factor) < 1e-3  # one factor an image
        assert np.isnan(out[:, 0, 0]).all() and np.isnan(out[1, 0, 1]) and not np.isnan(out[[0, 2], 0, 1]).any()
    assert AugmentParams().band_gain == 0 and AugmentParams().saturation == 0  # off in the method


def test_negative_sampling_respects_area_and_distance():
    area = sampling_area([box(-57, -7, -56, -6)], (-75, -35, -35, 5), [box(-56.6, -6.6, -56.4, -6.4)])
    mines_lon, mines_lat = np.array([-56.8]), np.array([-6.8])
    pts = sample_negative_points(300, area, mines_lon, mines_lat, 20_000, seed=2)
    assert len(pts) == 300
    assert ((pts.lon > -57) & (pts.lon < -56) & (pts.lat > -7) & (pts.lat < -6)).all()
    in_town = (pts.lon > -56.6) & (pts.lon < -56.4) & (pts.lat > -6.6) & (pts.lat < -6.4)
    assert not in_town.any()
    d = EARTH_RADIUS_M * np.radians(np.hypot((pts.lon + 56.8) * np.cos(np.radians(6.8)), pts.lat + 6.8))
    assert d.min() >= 19_900  # haversine vs planar approximation differs by far less than 100 m here
    with pytest.raises(EmptyRegionError):
        sampling_area([box(10, 10, 11, 11)], (-75, -35, -35, 5))
    with pytest.raises(EmptyRegionError, match="min_distance"):
        sample_negative_points(5, box(-56.81, -6.81, -56.79, -6.79), mines_lon, mines_lat, 50_000, max_draws=20_000)


def test_spatial_split_keeps_groups_together():
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame(
        {"lon": -56 + rng.uniform(0, 1, n), "lat": -6 + rng.uniform(0, 1, n), "label": rng.integers(0, 2, n)}
    )
    split, groups = assign_split(df, 0.2, 20_000, seed=1)
    assert set(split) == {"train", "val"}
    for g in groups.unique():
        assert split[(groups == g) & (df.label == 1)].nunique() <= 1
        assert split[(groups == g) & (df.label == 0)].nunique() <= 1
    share = (split == "val").mean()
    assert 0.1 < share < 0.4
    g = spatial_groups(np.array([-56.0, -56.0001, np.nan]), np.array([-6.0, -6.0001, np.nan]), 1000)
    assert g[0] == g[1] and g[2].startswith("p")
    # Chips without coordinates stay with their source list.
    g = spatial_groups(np.full(4, np.nan), np.full(4, np.nan), 1000, np.array(["a", "b", "a", "b"], dtype=object))
    assert g.tolist() == ["src:a", "src:b", "src:a", "src:b"]


def test_held_out_sources_form_the_test_split():
    rng = np.random.default_rng(3)
    sources = np.array(
        ["bolivar_pos", "bolivar_neg", "amazon_pos", "amazon_neg", "peru_pos", "peru_neg"] * 20, dtype=object
    )
    df = pd.DataFrame(
        {"lon": np.nan, "lat": np.nan, "source": sources, "label": [int(s.endswith("pos")) for s in sources]}
    )
    # One place-group straddles a held-out and a kept source: it must go to test whole.
    df.loc[0, ["lon", "lat"]] = [-56.0, -6.0]
    df.loc[2, ["lon", "lat"]] = [-56.0001, -6.0001]
    split, groups = assign_split(df, 0.3, 20_000, seed=rng.integers(100), test_sources=["^BOLIVAR"])
    assert set(split[df.source.str.startswith("bolivar")]) == {"test"}
    assert split[2] == "test"  # same 20 km block as a held-out chip
    rest = split[~df.source.str.startswith("bolivar") & (df.index != 2)]
    assert set(rest) == {"train", "val"}
    for g in groups[split != "test"].unique():  # whole source groups on one side
        assert split[(groups == g) & (split != "test")].nunique() == 1
    assert held_out(["a_bolivar", "amazon", None], ["bolivar", "^ama"]).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="every training image"):
        assign_split(df, 0.3, 20_000, test_sources=["."])
    with pytest.raises(ValueError, match="regular expression"):
        held_out(["a"], ["("])


def test_local_chips_split_in_runs_of_their_list_with_every_list_validated():
    rng = np.random.default_rng(5)
    sources = ["riverbank_neg"] * 40 + ["cloud_neg"] * 60 + ["mines_a"] * 30 + ["mines_b"] * 50 + ["held_pos"] * 10
    names = [f"{s}__{i:04d}.tif" for s, n in zip(*np.unique(sources, return_counts=True)) for i in range(n)]
    df = pd.DataFrame({"path": names, "source": sorted(sources), "lon": np.nan, "lat": np.nan})
    df["label"] = [int("mines" in s or "pos" in s) for s in df["source"]]
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)  # index order must not matter
    split, groups = assign_split(df, 0.2, 20_000, seed=3, test_sources=["held"], run_length=10)
    assert set(split[df.source == "held_pos"]) == {"test"}
    for name, rows in df[split != "test"].groupby("source"):
        # Runs are ten consecutive file names of one list.
        for _, run in rows.groupby(groups[rows.index]):
            ranks = sorted(int(p[-8:-4]) for p in run["path"])
            assert len(ranks) == 10 and ranks == list(range(ranks[0], ranks[0] + 10)) and ranks[0] % 10 == 0
            assert split[run.index].nunique() == 1
        val = (split[rows.index] == "val").sum()
        assert 0 < val < len(rows), name  # every list is both trained on and validated on
        assert val <= 2 * 0.2 * len(rows)
    # Without runs, lists stay whole: some list is missing from training or from validation.
    split, groups = assign_split(df, 0.2, 20_000, seed=3, test_sources=["held"])
    per_list = split[split != "test"].groupby(df["source"]).nunique()
    assert (per_list == 1).all()
    with pytest.raises(ValueError, match="source column"):
        assign_split(df.drop(columns="source"), 0.2, 20_000, run_length=10)


def test_validation_skips_groups_that_overshoot_and_else_takes_the_smallest():
    # Runs of 20: a 21-chip list has runs of 20 and 1; a 40-chip list two runs of 20.
    sources = ["short"] * 21 + ["long"] * 40
    df = pd.DataFrame(
        {
            "path": [f"{s}__{i:04d}" for i, s in enumerate(sources)],
            "source": sources,
            "lon": np.nan,
            "lat": np.nan,
            "label": 0,
        }
    )
    for seed in range(5):
        split, groups = assign_split(df, 0.15, 20_000, seed=seed, run_length=20)
        val = split[split == "val"].groupby(df["source"]).size()
        # 15 % of 21 is 3.2: the run of 20 would overshoot, the run of 1 fits.
        assert val["short"] == 1
        # 15 % of 40 is 6: both runs overshoot, so the smaller (either, 20 chips) goes.
        assert val["long"] == 20


def test_geodesic_area_of_one_hectare_square():
    # 100 m x 100 m at the equator: 1 hectare.
    d = 100 / 111_319.49
    assert geodesic_area_ha(box(0, 0, d, 100 / 110_574.27)) == pytest.approx(1.0, rel=0.002)


def _tile(path, value, size=16):
    arr = np.full((3, size, size), value, np.float32) + np.linspace(0, 0.05, size * size).reshape(size, size)
    return write_raster(path, arr, EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), ["B02", "B03", "B04"])


def test_match_split_augment_pipeline(tmp_path):
    stats = {"bands": {b: {"p2": 0.0, "p98": 1.0} for b in ("B02", "B03", "B04")}}
    rows = []
    for i in range(6):
        for cls in ("pos", "neg"):
            p = _tile(tmp_path / cls / f"{cls}{i}.tif", 0.1 if cls == "pos" else 0.3)
            rows.append(
                {
                    "image_id": f"{cls}{i}",
                    "path": str(p),
                    "lon": -56 + i * 0.5,
                    "lat": -6.0,
                    "source": cls,
                    "scene_ids": "",
                    "dates": "",
                    "cloud_cover": "",
                    "status": "ok",
                    "cls": cls,
                }
            )
    idx = pd.DataFrame(rows)
    pos = match_training_images(idx[idx.cls == "pos"].drop(columns="cls"), stats, tmp_path / "m" / "pos")
    neg = match_training_images(idx[idx.cls == "neg"].drop(columns="cls"), stats, tmp_path / "m" / "neg")
    lo, hi = image_percentiles(read_raster(pos.path[0]).array)
    np.testing.assert_allclose(lo, 0.0, atol=1e-5)
    np.testing.assert_allclose(hi, 1.0, atol=1e-5)
    table = split_and_augment(pos, neg, stats, tmp_path / "pa", tmp_path / "na", 0.3, 10_000, AugmentParams(copies=2))
    originals = table[~table.augmented]
    assert len(originals) == 12 and set(originals.split) == {"train", "val"}
    aug = table[table.augmented]
    assert (aug.split == "train").all()
    assert len(aug) == 2 * (originals.split == "train").sum()
    # No augmented copy of a validation image exists anywhere.
    val_stems = {p.split("/")[-1][:-4] for p in originals[originals.split == "val"].path}
    assert not any(p.split("/")[-1].rsplit("_aug", 1)[0] in val_stems for p in aug.path)
    # Several writer threads save the same copies (the random draws stay in table order).
    threaded = split_and_augment(
        pos, neg, stats, tmp_path / "pa3", tmp_path / "na3", 0.3, 10_000, AugmentParams(copies=2), threads=3
    )
    t_aug = threaded[threaded.augmented]
    assert [p.split("/")[-1] for p in t_aug.path] == [p.split("/")[-1] for p in aug.path]
    for a, b in zip(aug.path, t_aug.path):
        np.testing.assert_array_equal(read_raster(a).array, read_raster(b).array)
    assert len({read_raster(p).array.tobytes() for p in aug.path}) == len(aug)  # the copies differ

    # Held-out sources: in the table as test, never augmented, listed in the chip-set manifest.
    # (The negatives sit in the positives' blocks here; move them so the blocks do not pull positives in.)
    table = split_and_augment(
        pos,
        neg.assign(lat=-8.0),
        stats,
        tmp_path / "pa2",
        tmp_path / "na2",
        0.3,
        10_000,
        AugmentParams(copies=2),
        test_sources=["^neg$"],
    )
    assert set(table[table.source == "neg"].split) == {"test"}
    assert not table[table.split == "test"].augmented.any()
    manifest = write_chip_manifest(table, "test", tmp_path / "heldout")
    chips = load_chip_set(manifest.parent)
    assert len(chips) == 6 and (chips.label == 0).all() and set(chips.source) == {"neg"}
    assert all(os.path.isfile(p) for p in chips.path)


def test_matching_can_leave_tiles_as_they_are(tmp_path):
    from garimpo.classifier.evaluation import read_chip

    stats = {"bands": {b: {"p2": 0.0, "p98": 1.0} for b in ("B02", "B03", "B04")}}
    p = _tile(tmp_path / "t.tif", 0.3)
    idx = pd.DataFrame(
        [
            {
                "image_id": "t",
                "path": str(p),
                "lon": -56.0,
                "lat": -6.0,
                "source": "s",
                "scene_ids": "",
                "dates": "",
                "cloud_cover": "",
                "status": "ok",
            }
        ]
    )
    kept = match_training_images(idx, stats, tmp_path / "kept", per_chip=False)
    np.testing.assert_array_equal(read_raster(kept.path[0]).array, read_raster(p).array)
    stretched = match_training_images(idx, stats, tmp_path / "stretched")
    assert not np.allclose(read_raster(stretched.path[0]).array, read_raster(p).array)
    # Evaluation reads chips the way the model was trained.
    np.testing.assert_allclose(read_chip(p, ["B04"], stats, per_chip=False)[0], read_raster(p).array[2], atol=1e-7)
    np.testing.assert_allclose(read_chip(p, ["B04"], stats)[0], read_raster(stretched.path[0]).array[2], atol=1e-6)


def test_import_local_png_chips(tmp_path):
    from PIL import Image

    folder = tmp_path / "chips"
    folder.mkdir()
    img = np.zeros((48, 48, 3), np.uint8)
    img[..., 0] = 255
    Image.fromarray(img).save(folder / "c1.png")
    # 8-bit chips are a rendering: decoded to reflectance by their declared encoding (255 -> 0.3 for AMW's).
    idx = import_local_images([{"path": str(folder), "encoding": "amw_l1c_rgb", "pixel_size_m": 10}], tmp_path / "out")
    r = read_raster(idx.path[0])
    assert r.band_names == ("B04", "B03", "B02") and r.array.shape == (3, 48, 48)
    assert r.array[0].max() == pytest.approx(0.3) and r.array[1].max() == 0.0
    assert idx.footprint_m[0] == "480" and idx.units[0] == "toa_reflectance"
    with pytest.raises(InputDataError, match="not found"):
        import_local_images([tmp_path / "nope"], tmp_path / "out")


@pytest.mark.shared
def test_real_anm_register_rejects_exactly_its_broken_rows(shared_dir):
    path = shared_dir / "data/anm/anm_mining_dams_2019.csv"
    good, bad = load_points(path, "LONGITUDE", "LATITUDE", "NOME_BARRAGEM_MINERACAO", bounds=(-75, -35, -35, 5))
    assert len(good) + len(bad) == 714
    assert len(bad) == 27
    assert bad["reason"].str.contains("lost decimal point").all()
    assert good["lon"].between(-75, -35).all() and good["lat"].between(-35, 5).all()


def test_local_images_take_their_source_from_a_manifest(tmp_path):
    from PIL import Image

    root = tmp_path / "chips"
    (root / "positive").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "positive" / name)
    (root / "manifest.csv").write_text("path,label,source\npositive/a.png,positive,listA\n")
    idx = import_local_images(
        [{"path": root / "positive", "encoding": "amw_l1c_rgb", "pixel_size_m": 10}], tmp_path / "out"
    )
    assert dict(zip(idx.image_id.str[-1], idx.source)) == {"a": "listA", "b": "positive"}  # b: not in the manifest


def test_no_point_files_is_an_empty_table():
    from garimpo.training.points import load_point_sources

    good, bad = load_point_sources([])
    assert good.empty and bad.empty and "lon" in good.columns
