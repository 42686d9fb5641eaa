"""Where the main job's time goes: step durations of every run recorded in a Dagster instance (e.g. the
``.dagster_home`` of a ``regimeflow run``), summed per step over all fold partitions, with the share of each
book (the sector book, the stock book).

Usage: DAGSTER_HOME=/path/.dagster_home python benchmarks/main_job_share.py [--since ISO-time]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

#: Step-key prefixes of each book (its assets and their look-ahead checks).
GROUPS = {
    "sector book": ("models__sector_pairs", "models__pairs_qrdqn", "eval__sector_book"),
    "stock book": ("models__stock_funnel", "models__stock_rl", "eval__stock_book"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--since", default=None, help="only runs started at or after this UTC time (ISO)")
    args = ap.parse_args()
    since = datetime.fromisoformat(args.since).replace(tzinfo=timezone.utc).timestamp() if args.since else 0.0
    instance = dg.DagsterInstance.get()
    per_step: dict[str, float] = defaultdict(float)
    runs = 0
    for record in instance.get_run_records():
        if (record.start_time or 0) < since:
            continue
        runs += 1
        for stat in instance.get_run_step_stats(record.dagster_run.run_id):
            if stat.start_time and stat.end_time:
                per_step[stat.step_key] += stat.end_time - stat.start_time
    total = sum(per_step.values())
    print(f"{runs} runs, {total:.0f} s of steps")
    for key, sec in sorted(per_step.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<58} {sec:8.1f} s  {sec / total:6.1%}")
    for name, prefixes in GROUPS.items():
        sec = sum(v for k, v in per_step.items() if k.startswith(prefixes))
        print(f"{name} ({', '.join(prefixes)}*): {sec:.0f} s = {sec / max(total, 1e-9):.1%} of the step time")


if __name__ == "__main__":
    main()
