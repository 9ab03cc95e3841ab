"""A few recommendations of a batch job printed with item metadata, so a person can judge them."""

from __future__ import annotations

import json

from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.datasets.warehouse import Warehouse
from recsys_spark.inference.output import read_output


def show_samples(spark, config: Config, job_name: str, count: int = 3, per_line: int = 5) -> str:
    """The first ``count`` served lines of the job's output: the user's latest interactions, then the top
    ``per_line`` recommendations, each with the items dataset's fields (when there is one)."""
    job = config.batch_job(job_name)
    lines = [json.loads(r.value) for r in read_output(spark, job.output).where(
        F.col("value").contains('"error":null')).limit(count).collect()]
    warehouse = Warehouse(spark, config)
    has_items = config.schema("items") is not None and warehouse.exists(warehouse.path("items"))
    wanted = {i for line in lines for i in line["output"]["recommendedItems"][:per_line]}
    users = [line["input"].get("userId") for line in lines if line["input"].get("userId")]
    history = {}
    if users:
        recent = (warehouse.read("interactions").where(F.col("USER_ID").isin(users))
                  .orderBy(F.desc("TIMESTAMP")).select("USER_ID", "ITEM_ID", "EVENT_TYPE").collect())
        for r in recent:
            if len(history.setdefault(r.USER_ID, [])) < 3:
                history[r.USER_ID].append((r.ITEM_ID, r.EVENT_TYPE))
                wanted.add(r.ITEM_ID)
    meta = {}
    if has_items and wanted:
        fields = [f for f in config.schema("items").names if f not in ("ITEM_ID", "CREATION_TIMESTAMP")][:4]
        for r in warehouse.read("items").where(F.col("ITEM_ID").isin(list(wanted))).collect():
            meta[r.ITEM_ID] = ", ".join(f"{f}={r[f]}" for f in fields if r[f] is not None)
    out = [f"sample recommendations of {job_name} ({job.output}):"]
    for line in lines:
        out.append(f"  {json.dumps(line['input'])}")
        user = line["input"].get("userId")
        for item, event in history.get(user, []):
            out.append(f"      recently {event:8} {item:10} {meta.get(item, '')}")
        scores = line["output"]["scores"] or [None] * len(line["output"]["recommendedItems"])
        for item, score in list(zip(line["output"]["recommendedItems"], scores))[:per_line]:
            shown = f"{score:.3f}" if score is not None else "-"
            out.append(f"    -> {item:10} {shown:>7}  {meta.get(item, '')}")
    return "\n".join(out)
