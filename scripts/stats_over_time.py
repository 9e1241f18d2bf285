"""Rule stats_over_time: mined, new and cumulative hectares per protected area and period (CSV + line plot)."""

import json
from pathlib import Path

from garimpo.errors import InputDataError
from garimpo.outputs.over_time import area_over_time, plot_over_time
from garimpo.outputs.products import read_areas, read_period_files
from garimpo.smk import rule_region, setup_logging, write_csv


def observed_shares(paths, periods) -> dict[str, float]:
    """period -> the share of the region its change file says was seen clearly (``observed_fraction``)."""
    out = {}
    for path, period in zip(paths, periods):
        meta = json.loads(Path(path).read_text()).get("metadata") or {}
        if "observed_fraction" in meta:
            out[str(period)] = float(meta["observed_fraction"])
    return out


def main(smk):
    log = setup_logging(smk)
    periods = list(smk.params.periods)
    if not periods:
        raise InputDataError("stats_over_time: no detection periods given (params.periods is empty)")
    detections = read_period_files(smk.input.detections, periods, "detection")
    changes = read_period_files(smk.input.changes, periods, "change")
    cfg = smk.params.encroachment
    areas = read_areas(smk.input.areas, cfg)
    region = rule_region(smk)
    name = smk.wildcards.region
    table = area_over_time(detections, changes, areas, cfg["name_field"], cfg.get("id_field"), region, name)
    whole = table[table.index < len(periods)]  # the region's rows come first, one per period
    log.info(
        "%d of %d areas hold mining; %s: %.1f ha mined in %s, %.1f ha over all periods",
        (len(table) - len(periods)) // len(periods),
        len(areas),
        name,
        whole["mined_ha"].iloc[-1],
        periods[-1],
        whole["cumulative_ha"].iloc[-1],
    )
    # How much of the region each period saw: a cloudy year's lower mined_ha means "not seen", not "less mining".
    observed = observed_shares(smk.input.changes, periods)
    table.insert(
        3,
        "observed_fraction",
        [observed.get(str(p)) if i < len(periods) else None for i, p in enumerate(table["period"])],
    )
    write_csv(smk.output.csv, table)
    plot_over_time(
        table,
        smk.output.png,
        title=f"Mined area over time: {name}",
        attribution=smk.params.attribution,
        observed=observed,
    )


if "snakemake" not in globals():  # standalone: python scripts/stats_over_time.py region=NAME
    from garimpo.smk import standalone

    snakemake = standalone("stats_over_time")
main(snakemake)
