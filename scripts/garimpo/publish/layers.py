"""A region's products as the named layers that the GeoPackage, the KML and the web map publish, in one order.

Layer names: ``detections_latest`` (the region's result, with status and first/last detected), then per period
``detections_{period}`` and ``change_{period}`` (new mining in that period), ``footprint`` (all ground ever
detected), ``protected_areas`` (those of ``encroachment.areas`` that meet the region) and ``region``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import shapely

from garimpo.publish.gis import detections_table

LATEST = "detections_latest"


def evidence_property(features: Sequence[Mapping], index: Mapping[str, Mapping]) -> list[dict]:
    """``features`` with the properties ``evidence`` (the thumbnail's path relative to the bundle, e.g.
    ``evidence/demo-00001.png``), ``evidence_before`` and ``evidence_after`` (the periods shown) added from the
    evidence index (``results/publish/{region}/evidence.json``: id -> {path, before, after}); a feature without
    an entry gets empty values."""
    out = []
    for f in features:
        props = dict(f["properties"])
        entry = index.get(str(props.get("id"))) or {}
        props["evidence"] = entry.get("path", "")
        props["evidence_before"] = entry.get("before") or ""
        props["evidence_after"] = entry.get("after") or ""
        out.append({"geometry": f["geometry"], "properties": props})
    return out


def protected_area_property(
    features: Sequence[Mapping], areas: Sequence[Mapping], name_field: str | None, id_field: str | None
) -> list[dict]:
    """``features`` with ``protected_area`` and ``protected_area_id`` (the names and ids of the ``areas`` each
    overlaps, ``"; "``-joined, empty for none; as :func:`garimpo.publish.gis.detections_table` finds them), so the
    map's popups and the GIS layers say which territory a detection lies in."""
    if not features:
        return []
    table = detections_table(features, areas, name_field, id_field)
    out = []
    for f, name, ident in zip(features, table["protected_area"], table["protected_area_id"]):
        out.append(
            {
                "geometry": f["geometry"],
                "properties": {**f["properties"], "protected_area": name, "protected_area_id": ident},
            }
        )
    return out


def areas_in(areas: Sequence[Mapping], region) -> list[dict]:
    """The areas (lon/lat polygon features with shapely geometries) that meet ``region`` (shapely, lon/lat), whole:
    a territory half inside the region is shown with its full outline."""
    if not areas:
        return []
    tree = shapely.STRtree([a["geometry"] for a in areas])
    hits = sorted(int(i) for i in tree.query(region, predicate="intersects"))
    return [dict(areas[i]) for i in hits]


def region_layers(
    latest: Sequence[Mapping],
    detections: Mapping[str, Sequence[Mapping]],
    changes: Mapping[str, Sequence[Mapping]],
    footprint: Sequence[Mapping],
    areas: Sequence[Mapping],
    region,
    region_name: str,
) -> dict[str, list]:
    """The ordered layers ``{name: features}`` of a region (see the module docstring); ``detections`` and
    ``changes`` map each period, in time order, to its features. Empty periods keep their layers."""
    layers: dict[str, list] = {LATEST: list(latest)}
    for period, feats in detections.items():
        layers[f"detections_{period}"] = list(feats)
    for period, feats in changes.items():
        layers[f"change_{period}"] = list(feats)
    layers["footprint"] = list(footprint)
    layers["protected_areas"] = areas_in(areas, region)
    layers["region"] = [{"geometry": region, "properties": {"name": region_name}}]
    return layers
