"""Rule make_demo_world: build the offline demo world (synthetic Sentinel-2 L2A STAC catalog + truth).

Standalone, as the rule: python scripts/make_demo_world.py [--configfile config/demo.yaml]
Or anywhere: python scripts/make_demo_world.py OUT_DIR [--seed 7] [--scale 1.0]
"""

import argparse
import json
import logging
import sys

from garimpo.smk import setup_logging, standalone
from garimpo.synthetic.demo_world import generate_demo_world


def main() -> None:
    argv = sys.argv[1:]
    smk = globals().get("snakemake")
    if smk is None and (not argv or argv[0].startswith("--configfile")):  # no OUT_DIR: as the rule would run
        smk = standalone("make_demo_world")
    if smk is not None:
        log = setup_logging(smk)
        params = smk.params
        out_dir = params.out_dir
        seed = int(params.seed)
        scale = float(getattr(params, "scale", 1.0))
    else:
        ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        ap.add_argument("out_dir", help="folder that receives catalog/ and truth/")
        ap.add_argument("--seed", type=int, default=7)
        ap.add_argument("--scale", type=float, default=1.0, help="extent factor (1.0 = 24 x 12 km)")
        args = ap.parse_args()
        log = setup_logging(None)
        out_dir, seed, scale = args.out_dir, args.seed, args.scale
    summary = generate_demo_world(out_dir, seed=seed, scale=scale)
    log.info("demo world summary: %s", json.dumps(summary, indent=1))
    logging.shutdown()


main()
