"""Rewrite a release bundle's MANIFEST.sha256 after files were added to it (the Snakemake report), and check it.

Usage: python scripts/publish_manifest.py results/publish/REGION [--check]
With --check, nothing is written: the bundle is compared with its manifest and every problem is printed
(exit status 1 when there is one).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from garimpo.publish.bundle import MANIFEST, verify_manifest, write_manifest  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the bundle, results/publish/REGION")
    parser.add_argument("--check", action="store_true", help="only check the bundle against its manifest")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"{args.folder}: no such folder; build it first with `make publish REGION=...`", file=sys.stderr)
        return 2
    if args.check:
        if not (args.folder / MANIFEST).is_file():
            print(f"{args.folder}: no {MANIFEST}; build the bundle with `make publish REGION=...`", file=sys.stderr)
            return 2
        problems = verify_manifest(args.folder)
        for line in problems:
            print(line)
        print(f"{args.folder}: {'intact' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    path = write_manifest(args.folder)
    print(f"{path}: {sum(1 for _ in path.read_text().splitlines())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
