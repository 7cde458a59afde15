"""Draw the results pages' and BENCHMARKS.md's figures from the numbers recorded in them.

    python scripts/plots_from_pages.py

The scripts that measure the numbers draw the same figures when they run (experiments/*.py,
bench/ingest.py, bench/loaders.py); this redraws them without rerunning anything, by
reading the pages' tables back (``experiments.plots.*_from_page``,
``bench/plots.py``'s ``*_from_section``): docs/results/img/{unlearnable,stylize,reinforce,
distill}.png and docs/bench/{ingest,loaders}.png. Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import plots as bench_plots  # noqa: E402  (bench/plots.py)

from experiments import plots  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", default=str(plots.RESULTS),
                   help="the results pages (default docs/results); figures go to its img/")
    p.add_argument("--benchmarks", default=str(REPO / "BENCHMARKS.md"),
                   help="BENCHMARKS.md; figures go to docs/bench/ next to it ('' for none)")
    args = p.parse_args(argv)
    written = plots.figures_from_pages(args.results_dir)
    if args.benchmarks:
        written += bench_plots.figures_from_benchmarks(args.benchmarks)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
