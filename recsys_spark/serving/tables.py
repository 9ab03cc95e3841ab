"""The warehouse's Delta tables read without Spark (delta-rs), local or S3 with the config's S3 settings.

>>> read_dataset(config, "users")                                   # doctest: +SKIP
pyarrow.Table
USER_ID: string ...
"""

from __future__ import annotations

import os

import pyarrow as pa

from recsys_spark.config import Config


def storage_options(config: Config) -> dict[str, str]:
    """delta-rs's S3 options from the config's ``s3`` settings (credentials from the environment, as S3A)."""
    s3 = config.s3
    options = {}
    if s3.endpoint:
        options["AWS_ENDPOINT_URL"] = s3.endpoint
        options["AWS_ALLOW_HTTP"] = str(s3.endpoint.startswith("http://")).lower()
    if s3.region or os.environ.get("AWS_REGION"):
        options["AWS_REGION"] = s3.region or os.environ["AWS_REGION"]
    if s3.path_style_access:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    return options


def table_uri(uri: str) -> str:
    """delta-rs names S3 ``s3://``; Spark users also write ``s3a://``."""
    return "s3://" + uri[len("s3a://"):] if uri.startswith("s3a://") else uri


def read_dataset(config: Config, dataset: str, columns: list[str] | None = None) -> pa.Table | None:
    """The dataset's latest table (schema columns only, or ``columns``), or None when it has none."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    schema = config.schema(dataset)
    if schema is None:
        return None
    try:
        table = DeltaTable(table_uri(f"{config.root.rstrip('/')}/{dataset}"), storage_options=storage_options(config))
    except TableNotFoundError:
        return None
    return table.to_pyarrow_table(columns=columns or schema.names)
