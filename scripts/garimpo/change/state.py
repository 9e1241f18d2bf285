"""The state of the ground over the periods, unit by unit: pure array functions, no georeferencing.

A *unit* is a square of the chip lattice (``garimpo.detection.coverage``). Per period a unit is *detected*
(inside a detection of that period) and/or *observed* (a chip covering it was clear: every unit of it had
enough clear pixels; for a unit detected later, every chip that detects it then must have been clear). A unit
detected in period P is:

- **persisting**: mining at the latest earlier period that observed it;
- **new**: no mining at the latest earlier period that observed it;
- **unknown**: no earlier period observed it (the first period, or only cloudy ones before) — never new, so a
  cloudy year neither creates alerts the year after nor makes a persisting mine look new.

"Mining" at an earlier period is read with the scan's own threshold, not the reported detections: a unit
covered there by a chip scoring at least the detection threshold counts as mined, even if that chip was not
reported (no seed chip in its group, ``detection.require_seed``). A reported detection needs a confident chip;
calling ground *new* needs the earlier look to have been confidently without mining — a mine missed by a hair
one year and caught the next is not new mining — and the ground to be under a chip at the seed (isolated)
threshold now: a persisting mine's detection wobbles by a chip at its edges from year to year (weak chips
flipping across the threshold), and those edges are not new mining either. Ground detected but failing
either test is *unknown*. Hysteresis over time, as ``detection.require_seed`` is over space.

A detected or mined unit counts as observed in its own period (it was seen well enough to be scored so).
"""

from __future__ import annotations

import numpy as np

NONE, UNKNOWN, NEW, PERSISTING = 0, 1, 2, 3
STATUS = {UNKNOWN: "unknown", NEW: "new", PERSISTING: "persisting"}


def _window_sums(a: np.ndarray, k: int) -> np.ndarray:
    """Sums of ``a`` [H, W] over every k x k window whose top-left corner is (i, j): [H, W], the window
    reaching past the bottom/right edge summing zeros there."""
    padded = np.zeros((a.shape[0] + k, a.shape[1] + k), np.int64)
    padded[1 : a.shape[0] + 1, 1 : a.shape[1] + 1] = a
    c = padded.cumsum(0).cumsum(1)
    h, w = a.shape
    return c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]


def observed_units(clear_px: np.ndarray, unit: int, chip_px: int, stride: int, min_clear: float) -> np.ndarray:
    """Units covered by at least one clear lattice chip (:func:`clear_chips`): bool [UH, UW].

    ``clear_px``: uint [UH, UW] clear pixels per ``unit`` x ``unit`` px square
    (``garimpo.detection.coverage.clear_pixel_counts``); lattice chips are ``chip_px`` px with top-left
    corners every ``stride`` px (both multiples of ``unit``), as the scan's lattice; chips reaching past
    the composite count their outside part as not clear. ``min_clear`` in (0, 1] (config
    ``change.min_clear_fraction``).

    Raises:
        ValueError: ``chip_px`` or ``stride`` is not a multiple of ``unit``.
    """
    return covering(clear_chips(clear_px, unit, chip_px, stride, min_clear), chip_px // unit) > 0


def positive_chips(
    rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, threshold: float, unit: int, shape
) -> np.ndarray:
    """Chips scoring at least ``threshold``, marked at their top-left unit: bool ``shape`` [UH, UW].

    ``rows``/``cols``: int [N] top-left pixels of the chips scored (multiples of ``unit``), ``scores``: [N] in
    [0, 1].
    """
    corners = np.zeros(shape, bool)
    keep = scores >= threshold
    r, c = rows[keep] // unit, cols[keep] // unit
    inside = (r < shape[0]) & (c < shape[1])
    corners[r[inside], c[inside]] = True
    return corners


def mined_units(
    rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, threshold: float, unit: int, chip_px: int, shape
) -> np.ndarray:
    """Units covered by a chip scoring at least ``threshold``: bool ``shape`` [UH, UW] (arguments as
    :func:`positive_chips`; chips are ``chip_px`` px, a multiple of ``unit``)."""
    return covering(positive_chips(rows, cols, scores, threshold, unit, shape), chip_px // unit) > 0


def unit_states(
    detected: np.ndarray, observed: np.ndarray, mined: np.ndarray | None = None, confident: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Status of every detected unit in every period, and the earlier period it was compared with.

    ``detected``: bool [P, ...] per period in time order (any trailing shape); ``mined``: bool [P, ...], the
    ground with mining evidence (chips at the detection threshold, :func:`mined_units`), what an earlier period
    is read with (``detected`` where None). ``observed``: bool [P, ...] (period q observed the unit), or
    [P, P, ...] where ``observed[p, q]`` says whether period q observed the unit as period p's detections need
    it seen (:func:`observed_for`); ``confident``: bool [P, ...], ground under a chip at the detections' seed
    (isolated) threshold: a unit that would be new but is not confident stays ``UNKNOWN`` (None: every detected
    unit is confident). Returns ``status`` int8 [P, ...] (``NONE`` where not detected, else
    ``UNKNOWN``, ``NEW`` or ``PERSISTING``) and ``compared`` int16 [P, ...]: the index of the latest earlier
    period that observed the unit (-1: none).

    Raises:
        ValueError: the arrays differ in shape.
    """
    mined = detected if mined is None else mined
    pairwise = observed.ndim == detected.ndim + 1
    if mined.shape != detected.shape or observed.shape[pairwise:] != detected.shape:
        raise ValueError(f"detected {detected.shape}, observed {observed.shape}, mined {mined.shape} differ in shape")
    mined = mined | detected
    confident = detected if confident is None else confident
    status = np.zeros(detected.shape, np.int8)
    compared = np.full(detected.shape, -1, np.int16)
    for p in range(detected.shape[0]):
        open_ = detected[p].copy()  # detected units whose earlier look is not found yet
        status[p][open_] = UNKNOWN
        for q in range(p - 1, -1, -1):  # latest earlier period first
            if not open_.any():
                break
            seen = open_ & ((observed[p, q] if pairwise else observed[q]) | mined[q])
            status[p][seen] = np.where(mined[q][seen], PERSISTING, np.where(confident[p][seen], NEW, UNKNOWN))
            compared[p][seen] = q
            open_ &= ~seen
    return status, compared


def observed_for(positive: np.ndarray, clear_chips: np.ndarray, fallback: np.ndarray, chip_units: int) -> np.ndarray:
    """Whether an earlier period saw each unit the way a later period's detections see it: bool [UH, UW].

    A unit is detected through the chips covering it that scored at the threshold (``positive``: bool
    [UH, UW], True at those chips' top-left units); the earlier period saw it when every one of those chips
    was clear enough then (``clear_chips``: bool [UH, UW], True at the top-left unit of each lattice chip with
    at least ``change.min_clear_fraction`` clear pixels in the earlier composite; :func:`clear_chips`). Any
    clear chip over the unit would not do: a chip beside a mine hidden by cloud is clear and empty, and the
    mine's ground would turn "new" the year after. Units under no positive chip take ``fallback`` (the
    earlier period's :func:`observed_units`). ``chip_units``: chip side in units.
    """
    n_positive = covering(positive, chip_units)
    n_unseen = covering(positive & ~clear_chips, chip_units)
    return np.where(n_positive > 0, n_unseen == 0, fallback)


def covering(corners: np.ndarray, k: int) -> np.ndarray:
    """Per unit, how many chips with a True top-left unit in ``corners`` [UH, UW] cover it (k x k-unit chips)."""
    return _window_sums(corners[::-1, ::-1].astype(np.int64), k)[::-1, ::-1]


def clear_chips(clear_px: np.ndarray, unit: int, chip_px: int, stride: int, min_clear: float) -> np.ndarray:
    """Lattice chips every unit square of which had at least ``min_clear`` of its pixels clear, marked at their
    top-left unit: bool [UH, UW] (arguments as :func:`observed_units`; units past the composite's edge count
    as not clear).

    Every unit, not the chip on average: a mine is a few hectares of a 23-41 ha chip, so a chip 90 % clear can
    still hide it, and its empty score would make the mine look new the year after.

    Raises:
        ValueError: ``chip_px`` or ``stride`` is not a multiple of ``unit``.
    """
    if chip_px % unit or stride % unit:
        raise ValueError(f"chip {chip_px} px and stride {stride} px must be multiples of the unit {unit} px")
    k, step = chip_px // unit, stride // unit
    uh, uw = clear_px.shape
    hidden = np.ones((uh + k, uw + k), np.int64)
    hidden[:uh, :uw] = clear_px < min_clear * unit * unit
    on_lattice = np.zeros(clear_px.shape, bool)
    on_lattice[::step, ::step] = True
    return on_lattice & (_window_sums(hidden, k)[:uh, :uw] == 0)


def first_last(detected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first and of the last period each unit was detected in: int16 [...] each, -1 if never.
    ``detected``: bool [P, ...]."""
    ever = detected.any(axis=0)
    first = np.where(ever, detected.argmax(axis=0), -1).astype(np.int16)
    last = np.where(ever, detected.shape[0] - 1 - detected[::-1].argmax(axis=0), -1).astype(np.int16)
    return first, last
