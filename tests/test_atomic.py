"""Atomic writers give their outputs the mode a plain open() would (0666 less the umask), not mkstemp's 0600."""

import hashlib
import os
import stat

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from garimpo.atomic import atomic_path, current_umask, default_file_mode

EPSG = "EPSG:32721"
ORIGIN = (600000.0, 9320000.0)


@pytest.fixture(params=[(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"])
def umask(request):
    mask, mode = request.param
    old = os.umask(mask)
    try:
        yield mode
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_read_without_being_changed(umask):
    before = os.umask(0o022)
    os.umask(before)
    assert current_umask() == before and default_file_mode() == umask
    assert current_umask() == before  # reading it left it as it was


def test_every_atomic_writer_gives_a_plain_open_mode(tmp_path, umask):
    import torch

    from garimpo.classifier.model import atomic_torch_save
    from garimpo.classifier.train import _write_json
    from garimpo.geo.cells import write_cell_list
    from garimpo.geo.geojson import write_geojson
    from garimpo.geo.raster import Grid, write_raster
    from garimpo.imagery.cache import SearchCache
    from garimpo.imagery.composite import write_composite
    from garimpo.imagery.download import download
    from garimpo.imagery.stac import ImageryRequest, Source
    from garimpo.smk import write_csv, write_json

    written = {
        "geojson": write_geojson(tmp_path / "d.geojson", {"type": "Point", "coordinates": [-55.0, -6.0]}),
        "json": write_json(tmp_path / "m.json", {"a": 1}),
        "csv": write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]})),
        "geotiff": write_raster(
            tmp_path / "r.tif",
            np.zeros((1, 8, 8), np.float32),
            EPSG,
            Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
            ["B04"],
        ),
        "cog": write_raster(
            tmp_path / "c.tif",
            np.zeros((1, 8, 8), np.float32),
            EPSG,
            Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
            ["B04"],
            cog=True,
        ),
        "cell list": write_cell_list(tmp_path / "cells.json", "demo", 10000, ["E1N1"]),
        "stac cache": SearchCache(tmp_path / "cache").put("k", []),
    }
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "best_model.pth")
    written["checkpoint"] = tmp_path / "best_model.pth"
    _write_json({"epoch": 1}, tmp_path / "history.json")
    written["training json"] = tmp_path / "history.json"
    grid = Grid(EPSG, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), 16, 16)
    write_composite(
        tmp_path / "composite.tif",
        Source.from_config({"kind": "local", "url": str(tmp_path / "none.json")}),
        ImageryRequest(("B04",), ("2021-01-01", "2021-12-31"), 20),
        grid,
        items=[],
        allow_empty=True,
    )
    written["composite"] = tmp_path / "composite.tif"
    src = tmp_path / "src.bin"
    src.write_bytes(b"pinned")
    os.chmod(src, 0o600)  # the source's own mode must not leak into the download
    written["download"] = download(src.as_uri(), tmp_path / "dl.bin", hashlib.sha256(b"pinned").hexdigest())
    modes = {name: oct(_mode(p)) for name, p in written.items()}
    assert modes == {name: oct(umask) for name in written}
    assert not [p.name for p in tmp_path.rglob(".*")]  # no temporary file left behind


def test_a_failed_write_leaves_neither_temporary_file_nor_target(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp, open(tmp, "w") as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
