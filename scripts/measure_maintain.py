#!/usr/bin/env python3
"""What `maintain` does to the example pipeline's warehouse (configs/synthetic-ecommerce.yaml): files and
bytes under the root before and after, per action.

In a temporary folder: synthetic data, the pipeline without its maintain step, then ``--nights`` more
nights of what a nightly schedule adds (a small landing file ingested, every solution trained again, the
batch jobs run), then:

1. ``maintain`` with the config's settings (the defaults): compaction, and nothing older than a week yet
   to vacuum, so the files replaced tonight stay;
2. ``maintain`` again as it would run once the retention has passed (``vacuum_retention_hours: 0``, and
   ``keep_versions: 1`` standing for the versions a long schedule accumulates).

    python scripts/measure_maintain.py --users 1000 --nights 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--nights", type=int, default=3)
    args = p.parse_args()
    from recsys_spark.config import load_config
    from recsys_spark.datasets.maintenance import run_maintain
    from recsys_spark.pipeline import run_pipeline
    from recsys_spark.session import session_for
    from recsys_spark.storage import footprint

    tmp = Path(tempfile.mkdtemp(prefix="measure-maintain-"))
    data = tmp / "data" / "synthetic"
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_synthetic.py"), "--out", str(data),
                    "--users", str(args.users), "--items", str(args.items)], check=True, capture_output=True)
    (tmp / "configs").mkdir()
    text = (REPO / "configs" / "synthetic-ecommerce.yaml").read_text().replace("local[*]", "local[2]")
    path = tmp / "configs" / "synthetic-ecommerce.yaml"
    path.write_text(text)
    config = load_config(path)
    spark = session_for(config, "measure-maintain")
    started = time.perf_counter()
    run_pipeline(spark, config, ("import", "ingest", "train", "batch"))
    events = [json.loads(x) for x in (data / "landing" / "events" / "events-0001.jsonl").read_text().splitlines()]
    for night in range(args.nights):
        late = [{**e, "eventId": f"night{night}-{e['eventId']}", "sentAt": int(e["sentAt"]) + 86400 * (night + 1)}
                for e in events[:50]]
        (data / "landing" / "events" / f"night-{night}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in late))
        run_pipeline(spark, config, ("ingest", "train", "batch"))
    print(f"warehouse built in {time.perf_counter() - started:.0f} s: {args.users:,} users, {args.nights} more nights")

    root = config.root
    first = run_maintain(spark, config)
    print("\n1. maintain with the config's settings (defaults)")
    print(first.summary())
    aged = config.model_copy(update={"maintain": config.maintain.model_copy(
        update={"vacuum_retention_hours": 0.0, "keep_versions": 1})})
    second = run_maintain(spark, aged)
    print("\n2. maintain once the retention has passed (vacuum_retention_hours 0, keep_versions 1)")
    print(second.summary())
    files, size = footprint(spark, root)
    print(f"\nunder the root: {first.before[0]:,} files, {first.before[1] / 1e6:.1f} MB before; "
          f"{files:,} files, {size / 1e6:.1f} MB after both "
          f"(files x{files / max(first.before[0], 1):.2f}, bytes x{size / max(first.before[1], 1):.2f})")


if __name__ == "__main__":
    main()
