"""Check a release bundle against its MANIFEST.sha256, add files to it after the run, or set a changed bundle aside.

Usage: python scripts/publish_manifest.py results/publish/REGION --check
       python scripts/publish_manifest.py results/publish/REGION --add report.zip
       python scripts/publish_manifest.py results/publish/REGION --prepare
--check writes nothing: every file changed, missing or not listed is printed (exit status 1 when there is one).
--add puts files added after the run (the Snakemake report) in the manifest, and refuses (exit status 1) when any
other file differs from it. --prepare, before `make publish` runs the workflow: a bundle whose files differ from
its manifest (report.zip aside) is moved to REGION.changed-TIME, so that every file of it is written again.
Needs only the Python standard library and the garimpo package.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from garimpo.publish.manifest import MANIFEST, add_to_manifest, set_aside_if_changed, verify_manifest  # noqa: E402

REPORT = "report.zip"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the bundle, results/publish/REGION")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="check the bundle against its manifest")
    mode.add_argument("--add", nargs="+", metavar="NAME", help="add these files (paths in the bundle) to the manifest")
    mode.add_argument("--prepare", action="store_true", help="set the bundle aside when its files were changed")
    args = parser.parse_args(argv)
    folder = args.folder
    if args.prepare:
        if not folder.is_dir():
            return 0
        problems, aside = set_aside_if_changed(folder, ignore=[REPORT])
        if aside is not None:
            print(
                f"{folder}: files differ from its {MANIFEST} ({'; '.join(problems)}); "
                f"moved to {aside}, building the bundle again"
            )
        return 0
    if not (folder / MANIFEST).is_file():
        print(f"{folder}: no {MANIFEST}; build the bundle with `make publish REGION=...`", file=sys.stderr)
        return 2
    if args.add:
        try:
            path = add_to_manifest(folder, args.add)
        except (ValueError, FileNotFoundError) as err:
            print(
                f"{folder}: not adding {', '.join(args.add)} to {MANIFEST}: {err}. Run `make publish` again: it sets a "
                "changed bundle aside and builds it anew",
                file=sys.stderr,
            )
            return 1
        print(f"{path}: {sum(1 for _ in path.read_text().splitlines())} files")
        return 0
    problems = verify_manifest(folder)
    for line in problems:
        print(line)
    print(f"{folder}: {'intact' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
