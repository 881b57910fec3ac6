"""`python -m analysis NAME [--runs PATH ...] [--out DIR] [--wandb ENTITY/PROJECT]`: one artifact, or the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runs as run_records
from .compare import BY, METRICS, compare
from .constructed import constructed
from .ensemble import ensemble
from .fig7 import DEFAULT_MAX_IMAGES
from .inventory import runs_table
from .report import ITEMS, report

ARTIFACTS = {**ITEMS, "report": report, "ensemble": ensemble, "compare": compare, "constructed": constructed,
             "runs": runs_table}
NEEDS_NO_RUNS = ("table1",)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument("name", choices=sorted(ARTIFACTS), metavar="NAME", help=f"one of: {', '.join(ARTIFACTS)}")
    parser.add_argument("--runs", nargs="+", metavar="PATH",
                        help="run folders, sweep folders or globs (default: multirun/ and outputs/)")
    parser.add_argument("--out", type=Path, default=Path("analysis/out"), help="output folder (default: analysis/out/)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from the W&B API instead of run folders")
    parser.add_argument("--wandb-filters", metavar="JSON", help='W&B run filters, e.g. \'{"group": "table6"}\'')
    parser.add_argument("--dataset", help="the data set a figure draws (default: the paper's, else the most common)")
    parser.add_argument("--recipe", help="the recipe a figure draws (default: the one with most runs)")
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help=f"images per run: fig7's test images, constructed's training images (default: "
                             f"{DEFAULT_MAX_IMAGES})")
    parser.add_argument("--test-images", type=int, metavar="N",
                        help="constructed: each net's test error on the first N test images (default: all of them)")
    parser.add_argument("--by", default="shortcut", metavar="KEY",
                        help=f"compare: the configuration key the compared arms differ in ({', '.join(BY)}, or any "
                             "dotted key such as recipe.lr or shortcut.gate_bias)")
    parser.add_argument("--metric", choices=sorted(METRICS), default="test_error", help="compare: the number compared")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if args.name in NEEDS_NO_RUNS:
            runs = None
        elif args.wandb:
            from .wandb_runs import load as load_wandb

            runs = load_wandb(args.wandb, args.wandb_filters)
        else:
            runs = run_records.load(args.runs)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"analysis: error: {err}", file=sys.stderr)
        return 2
    if args.name == "ensemble" and not args.runs:
        print("analysis: error: ensemble needs its members: --runs RUN_DIR RUN_DIR ...", file=sys.stderr)
        return 2
    try:
        artifact = ARTIFACTS[args.name](runs, args.out, dataset=args.dataset, recipe=args.recipe,
                                        max_images=args.max_images, test_images=args.test_images, by=args.by,
                                        metric=args.metric)
    except (FileNotFoundError, ValueError) as err:  # a bad --by or --metric; ensemble members of other test sets
        print(f"analysis: error: {err}", file=sys.stderr)
        return 2
    if runs is not None:
        aside = f"; {len(runs.set_aside)} more set aside as copies of these" if len(runs.set_aside) else ""
        counts = run_records.status_counts(runs.frame)
        print(f"Runs from {runs.source}: {len(runs.frame)} run folders ({counts}){aside}")
        for note in runs.notes:
            print(note)
        print()
    artifact.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
