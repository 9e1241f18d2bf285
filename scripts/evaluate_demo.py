"""Rule evaluate_demo: precision and recall of the demo detections against the synthetic truth."""

from garimpo.geo.vector import read_region
from garimpo.outputs.evaluation import evaluate_detections
from garimpo.smk import setup_logging, write_json


def main(smk):
    log = setup_logging(smk)
    control = read_region(smk.input.regions, "name", smk.params.control, key="demo_world.control_region")
    demo = read_region(smk.input.regions, "name", "demo", key="demo_world")
    result = evaluate_detections(smk.input.detections, smk.input.mines, demo, control)
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
