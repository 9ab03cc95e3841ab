"""The demo pipeline's time, this checkout against another commit, in one run: the same data and config,
runs alternating, each a fresh `pipeline run` process on a fresh warehouse. Prints each step's time per run
and, per side, the steps' time (the table's `total` line, the run's wall time from its first step to its
last; a release without that line ran its steps one after another: their sum) and the whole command's
wall time, as medians and their ratio.

    python scripts/bench_pipeline.py --base a658e69 --repeat 3 --work /tmp/bench-pipeline

Needs the demo data (`make demo` writes data/synthetic/). The other commit runs from a `git worktree` with
this checkout's .venv (its install must not differ, e.g. no other dependencies).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEP = re.compile(r"^(import|ingest|train|batch|maintain)\s+(\S+)\s+ok\s+([0-9.]+)", re.M)
TOTAL = re.compile(r"^total\s+([0-9.]+)", re.M)


def run_once(code: Path, work: Path) -> tuple[dict[tuple[str, str], float], float, float]:
    """((step, name) -> seconds, the steps' time, wall seconds) of one `pipeline run` of ``code`` into ``work``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    text = (REPO / "configs" / "synthetic-ecommerce.yaml").read_text()
    text = (text.replace("../data/", f"{REPO}/data/").replace("../warehouse", f"{work}/warehouse")
            .replace("../out", f"{work}/out"))
    config = work / "config.yaml"
    config.write_text(text)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "recsys_spark", "pipeline", "run", "--config", str(config),
                           "--samples", "0"], cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"pipeline run of {code} failed:\n{done.stderr[-3000:]}")
    steps = {(m[1], m[2]): float(m[3]) for m in STEP.finditer(done.stdout)}
    total = TOTAL.search(done.stdout)
    return steps, float(total[1]) if total else sum(steps.values()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-pipeline"))
    args = parser.parse_args()
    if not (REPO / "data" / "synthetic" / "interactions.csv").exists():
        sys.exit("no demo data: run `make demo` (or scripts/generate_synthetic.py --out data/synthetic) first")
    base = args.work / "base-checkout"
    shutil.rmtree(base, ignore_errors=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    sides = {"base": base, "this": REPO}
    results: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    try:
        for n in range(args.repeat):
            for side, code in sides.items():
                steps, total, wall = run_once(code, args.work / f"{side}-{n}")
                results[side].append((total, wall))
                print(f"{side:5} run {n + 1}: steps {total:6.1f} s, whole command {wall:6.1f} s  "
                      + ", ".join(f"{k} {name} {s:.1f}" for (k, name), s in steps.items()), flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    medians = {side: (statistics.median(t for t, _ in runs), statistics.median(w for _, w in runs))
               for side, runs in results.items()}
    (bs, bw), (ts, tw) = medians["base"], medians["this"]
    print(f"\nmedians of {args.repeat}: steps {bs:.1f} s ({args.base}) -> {ts:.1f} s (this), {bs / ts:.2f}x; "
          f"whole command {bw:.1f} -> {tw:.1f} s, {bw / tw:.2f}x")


if __name__ == "__main__":
    main()
