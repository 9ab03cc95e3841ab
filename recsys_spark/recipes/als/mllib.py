"""The ``mllib`` ALS engine: Spark MLlib's ALS (block counts from the cluster's cores, a checkpoint folder so
long runs do not overflow the stack); slower, but the factors never leave the executors while training.
MLlib solves each row exactly rather than by conjugate gradient, so its model differs slightly from the
other engines'.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import functions as F

from recsys_spark.core.models.factors import user_table
from recsys_spark.core.settings import FactorSettings
from recsys_spark.recipes.fitting import TrainingSet, id_index, to_pandas


def fit(data: TrainingSet, s: FactorSettings):
    """(the users table: USER_ID, FACTORS; item factors)."""
    from pyspark.ml.recommendation import ALS

    spark = data.spark
    user_ids = np.sort(to_pandas(data.interactions.select("USER_ID").distinct())["USER_ID"].to_numpy(dtype=object))
    index = id_index(spark, user_ids, "USER_ID", "USER_IDX")
    events = data.interactions.join(F.broadcast(index), "USER_ID").select(
        "USER_IDX", "ITEM_IDX", F.col("WEIGHT").cast("float").alias("WEIGHT"))
    n_users, n_items = len(user_ids), len(data.item_ids)
    cores = spark.sparkContext.defaultParallelism
    sc = spark.sparkContext
    if sc.getCheckpointDir() is None and data.checkpoint_dir:  # long lineages overflow the stack otherwise
        sc.setCheckpointDir(data.checkpoint_dir)
    als = ALS(rank=s.factors, maxIter=s.iterations, regParam=s.regularization, alpha=s.alpha, implicitPrefs=True,
              userCol="USER_IDX", itemCol="ITEM_IDX", ratingCol="WEIGHT", numUserBlocks=cores, numItemBlocks=cores,
              checkpointInterval=5, seed=s.seed, intermediateStorageLevel="MEMORY_AND_DISK")
    # MLlib builds confidence as 1 + alpha * rating: the rating is the (user, item)'s summed event weight.
    model = als.fit(events.groupBy("USER_IDX", "ITEM_IDX").agg(F.sum("WEIGHT").alias("WEIGHT")))
    users = np.zeros((n_users, s.factors), dtype=np.float32)
    items = np.zeros((n_items, s.factors), dtype=np.float32)
    for target, frame in ((users, model.userFactors), (items, model.itemFactors)):
        pdf = to_pandas(frame)
        if len(pdf):
            target[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy())
    return user_table(user_ids, users), items
