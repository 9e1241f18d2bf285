"""Candidate proposers: spectral thresholds, smoothing, SegFormer tiling and loading."""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network, even by accident

import numpy as np
import pytest

from garimpo.detection.proposers import (
    DEFAULT_SPECTRAL,
    label_zones,
    propose,
    proposer_recall,
    smooth_mask,
    spectral_candidates,
)
from garimpo.errors import ModelLoadError
from garimpo.pixels.indices import ndvi
from garimpo.schema import default

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
FOREST = dict(B02=0.02, B03=0.045, B04=0.025, B08=0.30, B11=0.14, B12=0.06)
CLEAR_RIVER = dict(B02=0.03, B03=0.04, B04=0.03, B08=0.02, B11=0.01, B12=0.005)
TURBID_POND = dict(B02=0.06, B03=0.09, B04=0.11, B08=0.07, B11=0.04, B12=0.03)
SEDIMENT = dict(B02=0.10, B03=0.13, B04=0.17, B08=0.22, B11=0.30, B12=0.24)
# Shrubby regrowth / degraded clearing: neither bare (NDVI ~0.41) nor water.
SCRUB = dict(B02=0.03, B03=0.06, B04=0.05, B08=0.12, B11=0.15, B12=0.08)


def _paint(bands: dict[str, np.ndarray], where: np.ndarray, cover: dict[str, float]) -> None:
    for b in BANDS:
        bands[b][where] = cover[b]


def _uniform(cover: dict[str, float], shape=(16, 16)) -> dict[str, np.ndarray]:
    return {b: np.full(shape, cover[b], np.float32) for b in BANDS}


def _disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture(scope="module")
def scene():
    """128x128 forest with a clear dark river, a garimpo chain of turbid ponds and sediment, a nodata corner."""
    shape = (128, 128)
    rng = np.random.default_rng(42)
    bands = {b: np.full(shape, FOREST[b], np.float32) for b in BANDS}
    yy, xx = np.mgrid[:128, :128]

    centre = 18 + 5 * np.sin(xx / 15.0)
    river = np.abs(yy - centre) < 3
    _paint(bands, river, CLEAR_RIVER)

    ponds = np.zeros(shape, bool)
    sediment = np.zeros(shape, bool)
    # Beads on a string along a diagonal stream: r=4 ponds 12 px apart (4-px dikes between
    # them) and sediment/tailings bars beside each dike.
    for t in range(8):
        cy, cx = 40 + 8 * t, 25 + 9 * t
        ponds |= _disc(shape, cy, cx, 4)
        sediment |= _disc(shape, cy + 7, cx + 2, 3)
    sediment &= ~ponds
    _paint(bands, sediment, SEDIMENT)
    _paint(bands, ponds, TURBID_POND)

    for b in BANDS:  # 3 % multiplicative sensor/atmosphere noise
        bands[b] *= rng.normal(1.0, 0.03, shape).astype(np.float32)
    nodata = (yy < 10) & (xx > 117)
    for b in BANDS:
        bands[b][nodata] = np.nan
    mine = ponds | sediment
    return {"bands": bands, "mine": mine, "river": river, "nodata": nodata}


# ---------------------------------------------------------------- spectral proposer


def test_spectral_recall_on_synthetic_garimpo(scene):
    cand = spectral_candidates(scene["bands"], {})
    assert cand.dtype == bool and cand.shape == (128, 128)
    stats = proposer_recall(cand, scene["mine"], valid=~scene["nodata"])
    assert stats["recall"] >= 0.9
    assert not cand[scene["river"]].any(), "clear dark river must not be a candidate"
    forest = ~(scene["mine"] | scene["river"] | scene["nodata"])
    assert not cand[forest].any(), "intact forest must not be a candidate"
    assert not cand[scene["nodata"]].any()
    assert stats["area_fraction"] < 0.1


def test_propose_spectral_after_smoothing(scene):
    mask = propose(scene["bands"], "spectral", {})
    stats = proposer_recall(mask, scene["mine"], valid=~scene["nodata"])
    assert stats["recall"] >= 0.95
    assert stats["area_fraction"] < 0.15  # the rest of the region is never sent to the classifier
    assert not mask[scene["river"]].any()
    assert not mask[scene["nodata"]].any()
    _, n = label_zones(mask)
    assert n == 1, "the bead chain should come out as one zone"


def test_turbid_vs_clear_water():
    assert spectral_candidates(_uniform(TURBID_POND)).all()
    assert not spectral_candidates(_uniform(CLEAR_RIVER)).any()
    # The red threshold is what separates them: raise it above turbid water's red. (Turbid
    # water's BSI is also slightly positive, so switch the bare-soil branch off as well.)
    assert not spectral_candidates(_uniform(TURBID_POND), {"turbid_red_min": 0.2, "bsi_min": 0.5}).any()


def test_bare_sediment_branch_and_override():
    assert spectral_candidates(_uniform(SEDIMENT)).all()
    assert not spectral_candidates(_uniform(SEDIMENT), {"bsi_min": 0.5, "loss_enabled": False}).any()


def test_vegetation_loss_needs_forest_surroundings():
    shape = (80, 80)
    in_forest = _uniform(FOREST, shape)
    patch = np.zeros(shape, bool)
    patch[35:45, 35:45] = True
    _paint(in_forest, patch, SCRUB)
    assert spectral_candidates(in_forest)[patch].all()
    assert not spectral_candidates(in_forest)[~patch].any()
    assert not spectral_candidates(in_forest, {"loss_enabled": False}).any()
    # The same cover everywhere (no forest around) is not "loss".
    assert not spectral_candidates(_uniform(SCRUB, shape)).any()


def test_vegetation_loss_from_reference_ndvi():
    shape = (40, 40)
    bands = _uniform(FOREST, shape)
    degraded = np.zeros(shape, bool)
    degraded[10:20, 10:20] = True
    # NDVI 0.55: above ndvi_max_loss, so only a before/after drop reveals it.
    _paint(bands, degraded, dict(FOREST, B04=0.045, B08=0.155))
    assert ndvi(bands)[degraded].min() > DEFAULT_SPECTRAL["ndvi_max_loss"]
    assert not spectral_candidates(bands).any()
    reference = np.full(shape, 0.9, np.float32)
    cand = spectral_candidates(bands, {"reference_ndvi": reference})
    assert np.array_equal(cand, degraded)
    with pytest.raises(ValueError, match="shape"):
        spectral_candidates(bands, {"reference_ndvi": reference[:5]})


def _pair(shape=(96, 96)):
    """An earlier and a later scene of forest: an old clearing (pasture-like scrub, NDVI ~0.41) in both, a new
    clearing of the same cover only in the later one. Returns (earlier, later, old, new)."""
    earlier = _uniform(FOREST, shape)
    old = np.zeros(shape, bool)
    old[10:30, 10:30] = True
    new = np.zeros(shape, bool)
    new[60:80, 60:80] = True
    _paint(earlier, old, SCRUB)
    later = {b: v.copy() for b, v in earlier.items()}
    _paint(later, new, SCRUB)
    return earlier, later, old, new


def test_reference_ndvi_flags_the_new_clearing_not_the_old_one():
    earlier, later, old, new = _pair()
    without = spectral_candidates(later)
    assert without[old].all() and without[new].all()  # low NDVI in forest: both look like loss
    cand = spectral_candidates(later, {"reference_ndvi": ndvi(earlier)})
    assert np.array_equal(cand, new)  # only the NDVI drop since the earlier image


def test_nan_in_the_reference_falls_back_to_the_reference_free_test():
    earlier, later, old, new = _pair()
    ref = ndvi(earlier)
    # No earlier NDVI at all: exactly the reference-free mask.
    all_nan = np.full(ref.shape, np.nan, np.float32)
    assert np.array_equal(spectral_candidates(later, {"reference_ndvi": all_nan}), spectral_candidates(later))
    # A cloud then over the new clearing and over intact forest: the clearing is still loss, the forest not.
    cloud = np.zeros(ref.shape, bool)
    cloud[55:90, 40:90] = True
    ref[cloud] = np.nan
    cand = spectral_candidates(later, {"reference_ndvi": ref})
    assert cand[new].all()
    assert not cand[cloud & ~new].any()
    assert not cand[old].any()  # seen then: no drop, so no loss
    # With the reference-free test switched off, a clouded pixel has no loss test at all.
    assert not spectral_candidates(later, {"reference_ndvi": ref, "loss_enabled": False})[new].any()


@pytest.mark.parametrize("decimate", [1, 2])
def test_candidate_mask_with_an_earlier_window(decimate):
    from garimpo.detection.candidates import REFERENCE_BANDS, coarse_candidate_mask, reference_ndvi

    earlier, later, old, new = _pair()
    arr = np.stack([later[b] for b in BANDS])
    ref = {b: earlier[b] for b in REFERENCE_BANDS}
    assert reference_ndvi(ref, decimate).shape == (96 // decimate, 96 // decimate)
    plain = coarse_candidate_mask(arr, BANDS, {"method": "spectral"}, decimate)
    got = coarse_candidate_mask(arr, BANDS, {"method": "spectral", "earlier_reference": True}, decimate, None, ref)
    assert got.shape == plain.shape == (96 // decimate, 96 // decimate)
    f = decimate
    assert plain[old[::f, ::f]].all() and plain[new[::f, ::f]].all()
    assert got[new[::f, ::f]].all() and not got[old[::f, ::f]].any()
    # the caller's config is left as it is
    config = {"method": "spectral", "spectral": {"ndvi_drop": 0.3}}
    coarse_candidate_mask(arr, BANDS, config, decimate, None, ref)
    assert config == {"method": "spectral", "spectral": {"ndvi_drop": 0.3}}
    with pytest.raises(ValueError, match="shape"):
        coarse_candidate_mask(arr, BANDS, None, decimate, None, {b: v[:50] for b, v in ref.items()})
    with pytest.raises(KeyError, match="B08"):
        coarse_candidate_mask(arr, BANDS, None, decimate, None, {"B04": ref["B04"]})


def test_only_the_spectral_part_of_union_reads_the_reference():
    from garimpo.detection.candidates import REFERENCE_BANDS, coarse_candidate_mask
    from garimpo.detection.proposers import get

    earlier, later, old, new = _pair()
    arr = np.stack([later[b] for b in BANDS])
    ref = {b: earlier[b] for b in REFERENCE_BANDS}
    fake = _FakeModel((96, 96))
    fake.mask[:] = False
    fake.mask[40:50, 0:20] = True
    union = coarse_candidate_mask(arr, BANDS, {"method": "union"}, 1, fake, ref)
    spectral = coarse_candidate_mask(arr, BANDS, {"method": "spectral"}, 1, None, ref)
    seg = coarse_candidate_mask(arr, BANDS, {"method": "segformer"}, 1, fake, ref)
    assert np.array_equal(seg, coarse_candidate_mask(arr, BANDS, {"method": "segformer"}, 1, fake))
    assert np.array_equal(union, spectral | seg)
    assert not union[old].any() and union[new].all()
    assert get("spectral").reference_section == get("union").reference_section == "spectral"
    assert get("segformer").reference_section is None


def test_nan_pixels_never_candidates():
    bands = _uniform(SEDIMENT)
    bands["B11"][3, 4] = np.nan
    cand = spectral_candidates(bands)
    assert not cand[3, 4] and cand.sum() == cand.size - 1


def test_unknown_spectral_param_rejected():
    with pytest.raises(ValueError, match="bsi_mn"):
        spectral_candidates(_uniform(FOREST), {"bsi_mn": 0.1})


# ---------------------------------------------------------------- smoothing, labels, recall


def test_smoothing_joins_beads_and_drops_speck():
    mask = np.zeros((64, 64), bool)
    for x0 in (5, 13, 21, 29):  # 5x5 ponds, 3-px gaps
        mask[20:25, x0 : x0 + 5] = True
    mask[50, 50:52] = True  # 2-pixel speck
    assert label_zones(mask)[1] == 5
    out = smooth_mask(mask, closing_radius_px=3, opening_radius_px=1, min_area_px=10)
    labels, n = label_zones(out)
    assert n == 1
    assert not out[50, 50:52].any()
    assert out[22, 5:34].all()  # gaps bridged along the chain
    assert out[21:24, 6:33].all()  # pond interiors kept (opening only rounds corners)

    grown = smooth_mask(mask, 3, 1, 10, dilate_px=2)
    assert grown.sum() > out.sum() and grown[out].all()


def test_closing_keeps_objects_at_the_edge():
    mask = np.zeros((30, 30), bool)
    mask[0:6, 0:6] = True
    out = smooth_mask(mask, closing_radius_px=3, opening_radius_px=0, min_area_px=1)
    assert out[0:6, 0:6].all()


def test_label_zones_8_connectivity():
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = mask[1, 1] = mask[4, 4] = True
    labels, n = label_zones(mask)
    assert labels.dtype == np.int32 and n == 2
    assert labels[0, 0] == labels[1, 1] != labels[4, 4]


def test_proposer_recall_values():
    truth = np.zeros((10, 10), bool)
    truth[0, :4] = True
    cand = np.zeros((10, 10), bool)
    cand[0, :3] = True
    cand[5, 5] = True
    stats = proposer_recall(cand, truth)
    assert stats["recall"] == pytest.approx(0.75)
    assert stats["area_fraction"] == pytest.approx(0.04)
    assert np.isnan(proposer_recall(cand, np.zeros_like(truth))["recall"])


# ---------------------------------------------------------------- dispatch


class _FakeModel:
    """Duck-typed SegFormer: marks a fixed square as suspicious."""

    def __init__(self, shape):
        self.mask = np.zeros(shape, bool)
        self.mask[100:120, 5:25] = True
        self.calls = []

    def predict_mask(self, rgb, suspicious_classes, **kwargs):
        self.calls.append((rgb.shape, list(suspicious_classes), kwargs))
        return self.mask


def test_propose_dispatch(scene):
    fake = _FakeModel((128, 128))
    params = {"segformer": {"suspicious_classes": ["barren"], "window": 256}}
    seg = propose(scene["bands"], "segformer", params, model=fake)
    assert fake.calls[-1] == ((3, 128, 128), ["barren"], {"window": 256})
    assert seg[105:115, 10:20].all() and not seg[scene["mine"]].any()
    spec = propose(scene["bands"], "spectral", params)
    both = propose(scene["bands"], "union", params, model=fake)
    assert np.array_equal(both, spec | seg)
    with pytest.raises(ValueError, match="method"):
        propose(scene["bands"], "magic", params)
    with pytest.raises(ValueError, match="segformer"):
        propose(scene["bands"], "segformer", {})


# ---------------------------------------------------------------- registry


def test_registered_methods_are_the_schemas_enum():
    """The schema refuses a method the registry lacks, and the registry holds every method the schema allows."""
    import yaml

    from garimpo.detection import proposers

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "schema.yaml").read_text())
    enum = schema["properties"]["proposer"]["properties"]["method"]["enum"]
    assert proposers.METHODS == tuple(enum) == proposers.names()[: len(enum)]
    for name in proposers.METHODS:
        p = proposers.get(name)
        assert p.name == name and p.bands and set(p.bands) <= set(BANDS)
        # every parameter section is a schema object whose defaults are the schema's
        if p.section:
            assert p.defaults() == default(f"proposer.{p.section}")
    assert proposers.get("union").bands == proposers.SPECTRAL_BANDS and proposers.get("union").needs_model


def test_register_refuses_a_taken_name_and_get_an_unknown_one():
    from garimpo.detection.proposers import Proposer, get, names, register, unregister

    with pytest.raises(ValueError, match="already registered"):
        register(Proposer("spectral", ("B04",), lambda b, p, m: b["B04"] > 0))
    with pytest.raises(ValueError, match="unknown proposer method 'nope'.*spectral"):
        get("nope")
    toy = register(Proposer("toy", ("B04",), lambda b, p, m: np.asarray(b["B04"]) > 0.1))
    try:
        assert "toy" in names() and get("toy") is toy
    finally:
        unregister("toy")
    assert "toy" not in names()


def test_decimated_parameters_are_each_proposers_rescale():
    from garimpo.detection.proposers import scale_params

    assert scale_params({"method": "spectral"}, 1) == {"method": "spectral"}
    got = scale_params({"spectral": {"bsi_min": 0.1}, "segformer": {"window": 256}}, 2)
    assert got["spectral"] == {**DEFAULT_SPECTRAL, "bsi_min": 0.1, "forest_context_px": 12}  # round(25 / 2)
    assert got["segformer"] == {"window": 256}  # the SegFormer runs on what it is given: nothing to rescale
    assert got["smoothing"] == {"closing_radius_px": 2, "opening_radius_px": 0, "min_area_px": 2, "dilate_px": 1}


# ---------------------------------------------------------------- SegFormer

try:  # torch/transformers are only needed for the model proposer; spectral tests run without them
    import torch

    from garimpo.detection.segformer import (
        SegformerProposer,
        normalise_rgb,
        rgb_from_bands,
        sliding_window_logits,
        suspicious_ids,
        window_starts,
    )
except ImportError:  # pragma: no cover
    torch = None

pytestmark_torch = pytest.mark.skipif(torch is None, reason="torch/transformers not installed")

LOVEDA = ["background", "building", "road", "water", "barren", "forest", "agriculture"]
# Colours (RGB 0..1) the tiny model is taught, by LoveDA class id.
COLOURS = np.zeros((7, 3), np.float32)
COLOURS[3] = (0.10, 0.15, 0.40)  # water
COLOURS[4] = (0.80, 0.70, 0.50)  # barren
COLOURS[5] = (0.10, 0.30, 0.10)  # forest


def _blobs(rng, size: int) -> np.ndarray:
    lab = np.full((size, size), 5)
    for cls in (4, 3):
        for _ in range(2):
            cy, cx = rng.integers(0, size, 2)
            lab[_disc(lab.shape, cy, cx, int(rng.integers(5, 20)))] = cls
    return lab


def _render(lab: np.ndarray, rng) -> np.ndarray:
    rgb = COLOURS[lab].transpose(2, 0, 1)
    return (rgb + rng.normal(0, 0.02, rgb.shape)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny tensors gain nothing from threads, and spinning OpenMP threads crawl on a busy CI box."""
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_segformer_dir(tmp_path_factory):
    """A tiny SegFormer with LoveDA labels, briefly trained to map colours to classes, saved to disk.

    Random weights give near-constant logits, which would make any tiling comparison
    meaningless; a few seconds of training gives confident, colour-driven predictions.
    """
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=4,
        depths=[1, 1, 1, 1],
        sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 16, 32, 32],
        num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=16,
        num_labels=7,
        id2label=dict(enumerate(LOVEDA)),
        label2id={name: i for i, name in enumerate(LOVEDA)},
    )
    model = SegformerForSemanticSegmentation(config)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(20):
        labs = [_blobs(rng, 48) for _ in range(4)]
        x = torch.tensor(np.stack([normalise_rgb(_render(lab, rng)) for lab in labs]))
        y = torch.tensor(np.stack(labs))
        logits = torch.nn.functional.interpolate(model(pixel_values=x).logits, size=(48, 48), mode="bilinear")
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("tiny_segformer")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_segformer_dir):
    return SegformerProposer.from_pretrained(str(tiny_segformer_dir), device="cpu")


@pytest.fixture(scope="module")
def test_image():
    """300x200 (not a multiple of any window): forest, a sand lens and a diagonal river."""
    yy, xx = np.mgrid[:300, :200]
    lab = np.full((300, 200), 5)
    lab[((xx - 100) ** 2 / 900 + (yy - 150) ** 2 / 4000) < 1] = 4
    lab[np.abs(yy - 0.5 * xx - 40) < 10] = 3
    return lab, _render(lab, np.random.default_rng(1))


@pytestmark_torch
def test_predict_mask_shape_dtype_and_content(tiny, test_image):
    lab, rgb = test_image
    mask = tiny.predict_mask(rgb, ["Barren", "water"], window=128, overlap=32, batch_size=3)
    assert mask.shape == (300, 200) and mask.dtype == bool
    truth = np.isin(lab, [3, 4])
    assert (mask == truth).mean() > 0.9  # orientation, normalisation and class mapping are right


@pytestmark_torch
def test_tiling_matches_single_window(tiny, test_image):
    _, rgb = test_image
    whole = tiny.predict_logits(rgb, window=512).argmax(0).numpy()  # one window covers the image
    inner = (slice(16, -16), slice(16, -16))
    for window, overlap in [(128, 32), (96, 48), (64, 16)]:
        tiled = tiny.predict_logits(rgb, window=window, overlap=overlap).argmax(0).numpy()
        assert (tiled == whole)[inner].mean() > 0.97, (window, overlap)


@pytestmark_torch
def test_predict_mask_nodata_is_false(tiny, test_image):
    lab, rgb = test_image
    rgb = rgb.copy()
    rgb[:, 140:160, 90:110] = np.nan  # inside the sand lens
    mask = tiny.predict_mask(rgb, ["barren"], window=128, overlap=32)
    assert not mask[140:160, 90:110].any()


@pytestmark_torch
def test_sliding_window_stitching_is_exact_for_a_pointwise_model():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 5, kernel_size=1)
    image = torch.randn(3, 67, 45)
    with torch.inference_mode():
        full = conv(image[None])[0]
        for window, overlap in [(16, 4), (20, 7), (64, 0), (100, 10)]:
            tiled = sliding_window_logits(image, conv, num_labels=5, window=window, overlap=overlap, batch_size=3)
            torch.testing.assert_close(tiled, full, rtol=1e-5, atol=1e-5)


@pytestmark_torch
def test_window_starts_cover_with_overlap():
    assert window_starts(300, 128, 32) == [0, 96, 172]
    assert window_starts(100, 128, 32) == [0]
    for length, window, overlap in [(300, 128, 32), (513, 512, 64), (1000, 96, 48)]:
        starts = window_starts(length, window, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all() and starts[-1] + window == length
        assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))
    with pytest.raises(ValueError):
        window_starts(100, 32, 32)


@pytestmark_torch
def test_suspicious_ids():
    id2label = {str(i): name for i, name in enumerate(LOVEDA)}  # config.json keys are strings
    assert suspicious_ids(id2label, ["WATER", "barren"]) == [3, 4]
    with pytest.raises(ValueError, match="agriculture"):  # message lists the model's labels
        suspicious_ids(id2label, ["mine"])


@pytestmark_torch
def test_unknown_suspicious_class_raises(tiny, test_image):
    with pytest.raises(ValueError, match="garimpo"):
        tiny.predict_mask(test_image[1], ["garimpo"])


@pytestmark_torch
def test_rgb_from_bands_stretch():
    bands = {"B04": np.array([[0.3, np.nan]]), "B03": np.array([[0.15, 0.0]]), "B02": np.array([[0.6, -0.1]])}
    rgb = rgb_from_bands(bands)
    assert rgb.shape == (3, 1, 2) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[:, 0, 0], [1.0, 0.5, 1.0])
    assert np.isnan(rgb[0, 0, 1]) and rgb[2, 0, 1] == 0.0


@pytestmark_torch
def test_missing_local_model_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="fetch_segformer"):
        SegformerProposer.from_pretrained(str(tmp_path / "no_such_model"))


@pytestmark_torch
def test_corrupt_local_model_raises_model_load_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="proposer.segformer.local_dir"):
        SegformerProposer.from_pretrained(str(tmp_path))


@pytestmark_torch
def test_uncached_hub_id_offline_raises_model_load_error():
    with pytest.raises(ModelLoadError):
        SegformerProposer.from_pretrained("garimpo-tests/no-such-segformer-xyz")


@pytestmark_torch
def test_suspicious_classes_checked_against_the_model_labels_when_it_loads(tiny_segformer_dir):
    """An ADE20K-style label map with LoveDA's class names must fail at load, listing the model's labels."""
    from garimpo.detection.segformer import check_labels
    from garimpo.errors import InputDataError

    ok = SegformerProposer.from_pretrained(
        str(tiny_segformer_dir), device="cpu", suspicious_classes=["barren", "water"]
    )
    assert ok.suspicious_ids(["barren", "water"]) == [3, 4]
    with pytest.raises(InputDataError, match=r"'sand'.*proposer.segformer.suspicious_classes"):
        SegformerProposer.from_pretrained(str(tiny_segformer_dir), device="cpu", suspicious_classes=["sand"])
    ade_like = {0: "wall", 1: "building", 2: "sky", 21: "water", 46: "sand"}
    with pytest.raises(InputDataError, match=r"\['barren'\].*'wall'.*hub_id"):
        check_labels(ade_like, ["barren", "water"], "nvidia/segformer-b0-finetuned-ade-512-512")


def test_default_segformer_is_one_whose_labels_hold_the_default_classes():
    """The shipped default hub model must be a LoveDA fine-tune, since the default classes are LoveDA's."""
    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "schema.yaml").read_text())
    seg = schema["properties"]["proposer"]["properties"]["segformer"]["properties"]
    assert "loveda" in seg["hub_id"]["default"].lower()
    assert set(seg["suspicious_classes"]["default"]) <= set(LOVEDA)


@pytestmark_torch
def test_fetch_refuses_a_model_without_the_suspicious_classes(tiny_segformer_dir, tmp_path, monkeypatch):
    """The fetch rule checks the downloaded label map and leaves nothing behind when it does not fit."""
    import shutil

    import huggingface_hub

    from garimpo.detection.segformer import fetch_segformer
    from garimpo.errors import InputDataError

    def fake_download(repo_id, local_dir, allow_patterns):  # what the hub would put there
        shutil.copytree(tiny_segformer_dir, local_dir, dirs_exist_ok=True)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert (fetch_segformer("owner/loveda", tmp_path / "ok", ["barren"]) / "config.json").is_file()
    with pytest.raises(InputDataError, match="has no|unknown suspicious classes"):
        fetch_segformer("owner/ade", tmp_path / "bad", ["sand"])
    assert not (tmp_path / "bad").exists()
