"""Where a dataset group's tables live, and the Delta operations every job shares.

Layout under the root (docs/architecture.md)::

    <root>/interactions/  <root>/users/  <root>/items/   one Delta table per dataset
    <root>/_rejects/<dataset>/                           rows that failed validation, with reasons
    <root>/_jobs/                                        one row per job run
    <root>/_checkpoints/                                 streaming ingestion progress
    <root>/_staging/<job id>/                            an import's intermediate rows, deleted when it ends
    <root>/_imported/<dataset>/                          the files only_new_files imports took (ledger)

Dataset tables carry the schema's columns plus bookkeeping columns starting with ``_``: ``_ORIGIN``
(``bulk`` for CSV imports, ``stream`` for ingested records; a FULL import replaces only bulk rows, as the
managed service does) and, for interactions, ``_EVENT_ID`` (the PutEvents eventId, for deduplication).

>>> wh = Warehouse(spark, config)                                   # doctest: +SKIP
>>> wh.version("interactions")                                      # doctest: +SKIP
3
"""

from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from recsys_spark.config import Config
from recsys_spark.datasets.housekeeping import STATS_COLUMNS, stats_columns, stats_property
from recsys_spark.errors import UserError, is_conflict
from recsys_spark.schema import DatasetSchema
from recsys_spark.storage import list_names

COMMIT_FILE = re.compile(r"\d{20}\.json")  # a Delta commit in the table's _delta_log
ORIGIN = "_ORIGIN"
EVENT_ID = "_EVENT_ID"
BULK, STREAM = "bulk", "stream"
ID_FIELD = {"users": "USER_ID", "items": "ITEM_ID"}
INTERACTION_KEY = ("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE")

REJECTS_SCHEMA = T.StructType([
    T.StructField("job_id", T.StringType(), False),
    T.StructField("dataset", T.StringType(), False),
    T.StructField("source_file", T.StringType(), True),
    T.StructField("line", T.StringType(), True),
    T.StructField("reason", T.StringType(), False),
    T.StructField("rejected_at", T.TimestampType(), False),
    # Added later: tables written before it get it on their next append (null in their older rows).
    T.StructField("line_number", T.LongType(), True),
])


def bookkeeping_fields(dataset: str) -> list[T.StructField]:
    fields = [T.StructField(ORIGIN, T.StringType(), False)]
    if dataset == "interactions":
        fields.append(T.StructField(EVENT_ID, T.StringType(), True))
    return fields


def struct_type(schema: DatasetSchema) -> T.StructType:
    """The Spark type of a dataset's columns, fields in schema order."""
    return from_arrow_schema(schema.arrow_schema())


def interaction_key(schema: DatasetSchema) -> list[str]:
    """The columns that identify one interaction: USER_ID, ITEM_ID, TIMESTAMP and EVENT_TYPE when present."""
    return [c for c in INTERACTION_KEY if schema.field(c) is not None]


class Warehouse:
    """The tables of one dataset group (``config.root``), read and written through ``spark``."""

    def __init__(self, spark: SparkSession, config: Config):
        self.spark, self.config = spark, config
        self.root = config.root.rstrip("/")

    def path(self, dataset: str) -> str:
        return f"{self.root}/{dataset}"

    def rejects_path(self, dataset: str) -> str:
        return f"{self.root}/_rejects/{dataset}"

    @property
    def jobs_path(self) -> str:
        return f"{self.root}/_jobs"

    def staging_path(self, job_id: str) -> str:
        return f"{self.root}/_staging/{job_id}"

    def ensure_rejects(self, dataset: str) -> str:
        """The dataset's rejects table, created (without statistics on its raw lines) when missing."""
        path = self.rejects_path(dataset)
        if not self.exists(path):
            columns = stats_property(stats_columns(REJECTS_SCHEMA, rejects=True))
            create_if_missing(self.spark, path, REJECTS_SCHEMA, {STATS_COLUMNS: columns})
        return path

    def checkpoint_path(self, name: str) -> str:
        return f"{self.root}/_checkpoints/{name}"

    def schema(self, dataset: str) -> DatasetSchema:
        schema = self.config.schema(dataset)
        if schema is None:
            raise UserError(f"{self.config.source}: no schema for dataset {dataset!r} under dataset_group.schemas")
        return schema

    def table_type(self, dataset: str) -> T.StructType:
        """The Delta table's Spark schema: the dataset schema's fields, then the bookkeeping columns."""
        return T.StructType(list(struct_type(self.schema(dataset)).fields) + bookkeeping_fields(dataset))

    def exists(self, dataset_path: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, dataset_path)

    def version(self, dataset: str) -> int | None:
        """The table's latest Delta version, or None when it does not exist yet."""
        return table_version(self.spark, self.path(dataset))

    def versions(self) -> dict[str, int]:
        """The latest version of every existing dataset table (what a training run pins)."""
        found = {d: self.version(d) for d in ("interactions", "users", "items") if self.config.schema(d)}
        return {d: v for d, v in found.items() if v is not None}

    def read(self, dataset: str, version: int | None = None, bookkeeping: bool = False) -> DataFrame:
        """A dataset as a DataFrame, at ``version`` (time travel) or the latest; schema columns only unless
        ``bookkeeping``."""
        if not self.exists(self.path(dataset)):
            raise UserError(f"dataset {dataset!r} has no table yet at {self.path(dataset)}; import it first")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        frame = reader.load(self.path(dataset))
        return frame if bookkeeping else frame.select(*self.schema(dataset).names)

    def ensure_table(self, dataset: str) -> None:
        """Create the dataset's table if missing; check an existing one still matches the schema."""
        wanted = self.table_type(dataset)
        path = self.path(dataset)
        if not self.exists(path):
            columns = stats_property(stats_columns(wanted))  # no user IDs in the log's statistics
            if create_if_missing(self.spark, path, wanted, {STATS_COLUMNS: columns}):
                return
        found = {f.name: f.dataType for f in self.spark.read.format("delta").load(path).schema}
        changed = [f"{f.name} ({found[f.name].simpleString()} in the table, {f.dataType.simpleString()} in the "
                   f"schema)" for f in wanted if f.name in found and found[f.name] != f.dataType]
        missing = [f.name for f in wanted if f.name not in found]
        if changed or missing:
            raise UserError(
                f"the {dataset} table at {path} does not match the config's schema: "
                + "; ".join(filter(None, [f"types differ: {', '.join(changed)}" if changed else "",
                                          f"not in the table: {', '.join(missing)}" if missing else ""]))
                + ". Export the data, remove the table folder and import again with the new schema.")


def create_if_missing(spark: SparkSession, path: str, schema: T.StructType, properties: dict | None = None) -> bool:
    """Create the Delta table at ``path`` unless it exists. False when another job created it at the same
    moment: of two first commits Delta lets one win and fails the other with a conflict, or (creators of one
    application) with "non-empty location" or "table not found" while the winner's first commit is landing,
    which is waited for; the table exists either way, possibly with the other job's schema, which the caller
    checks. True otherwise: this call created it, or Delta's own if-not-exists found it made a moment before
    (unchecked: creators that close together are jobs of one run, of one config).
    """
    import time

    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    try:
        builder.execute()
        return True
    except Exception as e:
        if is_conflict(e):
            return False
        if not any(race in str(e) for race in ("DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "DELTA_TABLE_NOT_FOUND")):
            raise
        deadline = time.monotonic() + 10
        while table_version(spark, path) is None:
            if time.monotonic() > deadline:  # a folder of other files, not a table being created
                raise
            time.sleep(0.1)
        return False


def table_version(spark: SparkSession, path: str) -> int | None:
    """The table's latest version: its log's highest commit file (``NNN.json``), None when it has none. One
    listing of the log folder, where ``DeltaTable.history`` costs a snapshot and a Spark job (~0.2 s each;
    a training run pins three tables). Delta never removes a table's newest commit file."""
    commits = [int(n[:-5]) for n in list_names(spark, f"{path.rstrip('/')}/_delta_log") if COMMIT_FILE.fullmatch(n)]
    return max(commits, default=None)
