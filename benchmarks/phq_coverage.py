"""Empirical coverage of the PHQ prediction interval on synthetic cohorts (issue 9 item 6).

    .venv/bin/python benchmarks/phq_coverage.py [--replicates 200] [--subjects 60]

Prints nominal against measured coverage for cohorts with 1, 3 and 6 sessions per subject and an unbalanced
one (1 to 12 sessions, frequent subjects better predicted): the subject-weighted CV+ interval `phq predict`
uses, and the naive per-session residual quantile around the refit used before. Numpy only (see
fervideo.phq.simulation for the model: linear, subject random effect, one label per subject).
"""

from __future__ import annotations

import argparse

from fervideo.phq.simulation import measure_coverage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200, help="training cohorts per row")
    parser.add_argument("--subjects", type=int, default=60, help="subjects per training cohort")
    parser.add_argument("--test", type=int, default=100, help="new subjects scored per cohort")
    parser.add_argument("--coverage", type=float, default=0.9)
    args = parser.parse_args()
    print(f"{args.subjects} subjects per cohort, 5 subject-grouped folds, {args.replicates} cohorts x {args.test} "
          "new subjects per row")
    print(f"{'sessions/subject':>17} | {'nominal':>7} | {'CV+ (weighted)':>14} | {'naive (before)':>14} | "
          f"{'mean width':>10}")
    for sessions in (1, 3, 6, None):
        result = measure_coverage(sessions, n_subjects=args.subjects, coverage=args.coverage,
                                  n_replicates=args.replicates, n_test=args.test, seed=2026)
        label = str(sessions) if sessions else "1-12 unbalanced"
        print(f"{label:>17} | {result.nominal:>7.1%} | {result.cv_plus:>14.1%} | {result.naive:>14.1%} | "
              f"{result.mean_width:>10.2f}")


if __name__ == "__main__":
    main()
