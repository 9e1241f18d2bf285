"""Spectral indices: hand-computed values, zero denominators and nodata."""

import warnings

import numpy as np
import pytest

from garimpo.pixels.indices import bsi, mndwi, ndvi, ndwi, normalized_difference


def _px(**vals: float) -> dict[str, np.ndarray]:
    return {k: np.array([[v]], dtype=np.float32) for k, v in vals.items()}


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    # Guarded ratios must not emit RuntimeWarnings (divide by zero, invalid value).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_normalized_difference_values_and_dtype():
    out = normalized_difference(np.array([0.3, 0.1], np.float32), np.array([0.1, 0.3], np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.5, -0.5], rtol=1e-6)


@pytest.mark.parametrize(
    "a, b",
    [
        (0.0, 0.0),  # zero denominator
        (1e-8, 1e-8),  # near-zero denominator
        (0.01, -0.01),  # L2A can go slightly negative: cancels to zero
        (np.nan, 0.2),
        (0.2, np.nan),
    ],
)
def test_normalized_difference_guards(a, b):
    out = normalized_difference(np.array([a, 0.3], np.float32), np.array([b, 0.1], np.float32))
    assert np.isnan(out[0])
    assert out[1] == pytest.approx(0.5)  # neighbours unaffected


def test_indices_on_hand_computed_pixels():
    forest = _px(B02=0.02, B03=0.045, B04=0.025, B08=0.30, B11=0.14)
    assert ndvi(forest)[0, 0] == pytest.approx(0.275 / 0.325, rel=1e-5)
    assert ndwi(forest)[0, 0] == pytest.approx(-0.255 / 0.345, rel=1e-5)
    assert mndwi(forest)[0, 0] == pytest.approx(-0.095 / 0.185, rel=1e-5)
    assert bsi(forest)[0, 0] == pytest.approx((0.165 - 0.32) / (0.165 + 0.32), rel=1e-5)

    sediment = _px(B02=0.10, B03=0.13, B04=0.17, B08=0.22, B11=0.30)
    assert bsi(sediment)[0, 0] == pytest.approx(0.15 / 0.79, rel=1e-5)
    assert bsi(sediment)[0, 0] > 0 > bsi(forest)[0, 0]

    turbid = _px(B02=0.06, B03=0.09, B04=0.11, B08=0.07, B11=0.04)
    assert mndwi(turbid)[0, 0] == pytest.approx(0.05 / 0.13, rel=1e-5)
    assert ndvi(turbid)[0, 0] < 0


def test_indices_propagate_nodata_and_zero():
    bands = {
        "B02": np.array([[0.0, np.nan]], np.float32),
        "B03": np.array([[0.0, 0.05]], np.float32),
        "B04": np.array([[0.0, 0.05]], np.float32),
        "B08": np.array([[0.0, 0.2]], np.float32),
        "B11": np.array([[0.0, 0.1]], np.float32),
    }
    for index in (ndvi, ndwi, mndwi):
        out = index(bands)
        assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])
    assert np.isnan(bsi(bands)).all()  # B02 nodata poisons BSI's second pixel too


def test_missing_band_is_named():
    with pytest.raises(KeyError, match="B11"):
        mndwi(_px(B03=0.1))
