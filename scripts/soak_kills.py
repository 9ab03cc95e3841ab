"""A randomized soak of the kill matrix, bounded in time: kill import, ingest, train, batch, delete-users and
maintain (as processes of the command line) again and again, each at a random named point
(``recsys_spark/killpoints.py``) or after a random delay, and check every time that each table, version list
and output is the state before the job or after an uninterrupted run, never a mix, and that a rerun reaches
the uninterrupted run's state.

    python scripts/soak_kills.py --minutes 20 [--seed 7] [--work /tmp/soak]

Prints one line per case and a summary; exits 1 if any case failed (its folder is kept). The machinery is
``tests/kill_matrix.py``, the same as ``tests/test_kills.py``'s, which runs a representative part of it.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from kill_matrix import COMMANDS, build_base, run_case

from recsys_spark.killpoints import POINTS
from recsys_spark.session import get_spark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="stop starting new cases after this long")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed when not given)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the cases (default: a temporary one)")
    parser.add_argument("--max-delay", type=float, default=30.0,
                        help="timed kills come 1 to this many seconds after the job's start")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="soak-kills-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"seed {seed}, cases under {work}, for {args.minutes} minutes", flush=True)

    spark = get_spark("soak-kills", master="local[2]", conf={
        "spark.ui.enabled": False, "spark.sql.shuffle.partitions": 2, "spark.default.parallelism": 2})
    base = build_base(spark, work / "base")
    deadline = time.monotonic() + args.minutes * 60
    results, n = [], 0
    print(f"{'case':>4}  {'job':12} {'kill':32} {'exit':>5} {'seconds':>7}  result", flush=True)
    while time.monotonic() < deadline:
        n += 1
        kind = rng.choice(sorted(COMMANDS))
        point, delay = (rng.choice(POINTS[kind]), None) if rng.random() < 0.6 else (None, rng.uniform(1, args.max_delay))
        folder = work / f"case-{n:03d}"
        outcome = run_case(spark, base, folder, kind, point, delay)
        results.append(outcome)
        verdict = "ok" if outcome.ok else (f"FAILED mixed={outcome.mixed} rerun={outcome.rerun_differs} "
                                           f"jobs={outcome.jobs_problems}")
        print(f"{n:>4}  {kind:12} {outcome.kill:32} {outcome.returncode!s:>5} {outcome.seconds:7.1f}  "
              f"{verdict}{'' if outcome.killed else ' (finished before the kill)'}", flush=True)
        if outcome.ok:
            shutil.rmtree(folder, ignore_errors=True)
    failed = [r for r in results if not r.ok]
    killed = sum(r.killed for r in results)
    print(f"{len(results)} cases ({killed} killed, {len(results) - killed} finished first), {len(failed)} failed; "
          f"seed {seed}")
    spark.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
