"""Feature-store benchmark (a script, not a test).

    python benchmarks/features.py            # all cases, prints a table
    python benchmarks/features.py --repeat 3 --cases real,synthetic_500x20y

Cases (each runs in its own subprocess so that peak RSS = ru_maxrss is per case):

* ``real``: :func:`ml.features.compute_features` on the full shared snapshot (115 tickers,
  ~1.1M rows) with VIX/VIX3M.
* ``synthetic_500x20y``: 500 random-walk tickers x 5,040 trading days (2.52M rows).
* ``lookahead_real``: :func:`ml.lookahead.check_lookahead` with K=8 over all features on the
  full snapshot (1 full run + 16 prefix runs + comparisons).

Targets (2-core machine): 2.5M rows <= 10 s and peak RSS < 4 GB; look-ahead check <= 60 s.
Wall time is the best of ``--repeat`` runs; CPU time (user+sys) is reported too because the
machine may be shared (see the load average printed with the table). Results are also written
to ``benchmarks/results/features.json`` (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CASES = ("real", "synthetic_500x20y", "lookahead_real")
TARGETS = {"real": None, "synthetic_500x20y": 10.0, "lookahead_real": 60.0}
RSS_TARGET_GB = 4.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _run_case(name: str, repeat: int) -> dict:
    from benchmarks._data import load_real_bars, load_real_index_bars, synthetic_bars, synthetic_index_bars
    from ml.features import FEATURE_NAMES, compute_features
    from ml.lookahead import check_lookahead

    if name in ("real", "lookahead_real"):
        bars, index_bars = load_real_bars(), load_real_index_bars()
        if bars is None:
            return {"case": name, "skipped": "shared market snapshot not available"}
    else:
        bars = synthetic_bars(n_tickers=500, n_days=5040, seed=0, ragged=False)
        index_bars = synthetic_index_bars(n_days=5040, seed=1)
    out: dict = {
        "case": name, "rows": bars.height, "tickers": bars["ticker"].n_unique(), "features": len(FEATURE_NAMES)
    }
    walls, cpus = [], []
    for _ in range(1 if name == "lookahead_real" else repeat):
        t0, c0 = time.perf_counter(), _cpu()
        if name == "lookahead_real":
            report = check_lookahead(compute_features, bars, index_bars, k=8)
            out["passed"] = report.passed
            out["cutoffs"] = [d.isoformat() for d in report.cutoffs]
            out["max_abs_diff"] = max((c.max_abs_diff or 0.0) for c in report.checks)
        else:
            feats = compute_features(bars, index_bars)
            assert feats.height == bars.height
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    best = min(range(len(walls)), key=walls.__getitem__)
    out.update(wall_s=walls[best], cpu_s=cpus[best], walls=walls)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(_run_case(args.case, args.repeat)))
        return 0

    results = []
    for name in args.cases.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--case", name, "--repeat", str(args.repeat)],
            capture_output=True, text=True, cwd=ROOT, check=False,
        )
        if proc.returncode != 0:
            results.append({"case": name, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    header = (
        f"{'case':<20} {'rows':>10} {'tickers':>7} {'feats':>5} {'wall s':>8} {'cpu s':>8} "
        f"{'RSS GB':>7} {'target':>12}  ok"
    )
    print(header)
    print("-" * len(header))
    ok_all = True
    for r in results:
        if "rows" not in r:
            print(f"{r['case']:<20} {r.get('skipped') or r.get('error')}")
            continue
        tgt = TARGETS.get(r["case"])
        ok = (tgt is None or r["wall_s"] <= tgt) and r["peak_rss_gb"] < RSS_TARGET_GB and r.get("passed", True)
        ok_all &= ok
        tgt_s = f"<= {tgt:.0f} s" if tgt else "-"
        print(
            f"{r['case']:<20} {r['rows']:>10,} {r['tickers']:>7} {r['features']:>5} {r['wall_s']:>8.2f} "
            f"{r['cpu_s']:>8.2f} {r['peak_rss_gb']:>7.2f} {tgt_s:>12}  {'yes' if ok else 'NO'}"
        )
        if "passed" in r:
            print(
                f"{'':<20} look-ahead passed={r['passed']}, max |diff|={r['max_abs_diff']:.2g}, "
                f"cutoffs={', '.join(r['cutoffs'])}"
            )
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "features.json").write_text(json.dumps({"load_avg": load, "results": results}, indent=2))
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
