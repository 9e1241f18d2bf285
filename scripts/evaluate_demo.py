"""Rule evaluate_demo: precision and recall of the demo detections (the latest period) and of each later
period's new-mining alerts against the synthetic truth."""

from garimpo.geo.vector import read_region
from garimpo.outputs.evaluation import evaluate_alerts, evaluate_detections
from garimpo.smk import setup_logging, write_json


def main(smk):
    log = setup_logging(smk)
    control = read_region(smk.input.regions, "name", smk.params.control, key="demo_world.control_region")
    demo = read_region(smk.input.regions, "name", "demo", key="demo_world")
    result = evaluate_detections(smk.input.detections, smk.input.mines, demo, control)
    # The new-mining alerts of every period after the first, against the ground that became mining then.
    result["periods"] = {
        period: evaluate_alerts(path, smk.input.new_mining, period, demo, control, smk.input.mining_by_period)
        for period, path in zip(smk.params.periods[1:], smk.input.changes[1:])
    }
    for period, alerts in result["periods"].items():
        log.info("%s: new-mining alerts %s", period, alerts)
    result["note"] = "Synthetic demo world: these scores say nothing about real imagery."
    log.info(
        "precision %.3f recall %.3f (%d detections, %d truth mines, %d in control)",
        result["precision"],
        result["recall"],
        result["n_detections"],
        result["n_truth"],
        result["n_in_control"],
    )
    write_json(smk.output[0], result)


if "snakemake" not in globals():  # standalone: python scripts/evaluate_demo.py
    from garimpo.smk import standalone

    snakemake = standalone("evaluate_demo")
main(snakemake)
