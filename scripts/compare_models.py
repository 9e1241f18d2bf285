"""Is model B better than model A on the same chips?  Paired bootstrap of the evaluation figures.

    python scripts/compare_models.py RUN_A/results/eval/NAME RUN_B/results/eval/NAME [--block 20]

Each folder is one the evaluate_chip_set rule wrote (metrics.json, scores.csv).  Prints one JSON object:
B minus A for precision, recall, F1, specificity, PR-AUC and ROC-AUC at each run's own threshold, and
the interval of each difference.  An interval that holds 0 means these chips cannot tell the two apart.
"""

from __future__ import annotations

import argparse
import json
import sys

from garimpo.classifier.bootstrap import Bootstrap
from garimpo.classifier.compare import compare_runs


def main(argv=None) -> int:
    """Parse ``argv``, print the comparison as JSON, return the exit status (0)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", help="results/eval/NAME folder of model A")
    ap.add_argument("run_b", help="results/eval/NAME folder of model B")
    ap.add_argument("--resamples", type=int, default=Bootstrap.resamples)
    ap.add_argument("--level", type=float, default=Bootstrap.level)
    ap.add_argument(
        "--block",
        type=int,
        default=Bootstrap.block,
        help="consecutive chips of one source list drawn together (20 for the Amazon Mining Watch lists)",
    )
    ap.add_argument("--seed", type=int, default=Bootstrap.seed)
    args = ap.parse_args(argv)
    report = compare_runs(args.run_a, args.run_b, Bootstrap(args.resamples, args.level, args.block, args.seed))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
