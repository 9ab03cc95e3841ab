"""Avro-style dataset schemas, as the managed service writes them, and the service's rules for them.

A schema is a flat record: each field has a ``name``, a ``type`` (``string``, ``int``, ``long``, ``float``,
``double``, ``boolean``, or a nullable union such as ``["null", "string"]``) and optional ``categorical`` /
``textual`` flags. :meth:`DatasetSchema.problems` checks the rules of one dataset (required and reserved
fields, flags, limits); :meth:`DatasetSchema.arrow_schema` gives its columns' types.

>>> s = DatasetSchema.model_validate({"fields": [{"name": "ITEM_ID", "type": "string"},
...                                              {"name": "GENRES", "type": ["null", "string"], "categorical": True}]})
>>> s.problems("items")
[]
>>> s.arrow_schema().names
['ITEM_ID', 'GENRES']
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DATASETS = ("interactions", "users", "items")
AVRO_TYPES = ("string", "int", "long", "float", "double", "boolean")
NUMERIC_TYPES = ("int", "long", "float", "double")

# Fields every schema of the dataset must have, with their types (never nullable).
REQUIRED = {
    "interactions": {"USER_ID": "string", "ITEM_ID": "string", "TIMESTAMP": "long"},
    "users": {"USER_ID": "string"},
    "items": {"ITEM_ID": "string"},
}
# Reserved names the service gives a meaning to: (type, may be nullable).
RESERVED = {
    "interactions": {"EVENT_TYPE": ("string", False), "EVENT_VALUE": ("float", True),
                     "IMPRESSION": ("string", True), "RECOMMENDATION_ID": ("string", True),
                     "EVENT_ATTRIBUTION_SOURCE": ("string", True)},
    "users": {},
    "items": {"CREATION_TIMESTAMP": ("long", True)},
}
# The service's limits on metadata (fields that are neither required nor reserved).
MAX_METADATA = {"interactions": 5, "users": 25, "items": 100}
MIN_METADATA = {"interactions": 0, "users": 1, "items": 1}
MAX_ID_LENGTH = 256
MAX_CATEGORICAL_LENGTH = 1000
ID_FIELDS = ("USER_ID", "ITEM_ID")
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SchemaField(BaseModel):
    """One field: ``{name: GENRES, type: ["null", "string"], categorical: true}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str
    type: Any  # "string", or a union such as ["null", "string"]; checked below with one clear message
    categorical: bool = False
    textual: bool = False
    doc: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not FIELD_NAME.fullmatch(v):
            raise ValueError(f"field name {v!r} must be letters, digits and _, not starting with a digit")
        if v.startswith("_"):
            raise ValueError(f"field name {v!r}: names starting with _ are reserved for bookkeeping columns")
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: Any) -> str | list[str]:
        if isinstance(v, list):  # YAML reads an unquoted null as None
            v = ["null" if t is None else t for t in v]
        members = [v] if isinstance(v, str) else v if isinstance(v, list) else [None]
        non_null = [t for t in members if t != "null"]
        if len(non_null) != 1 or not isinstance(non_null[0], str) or (isinstance(v, list) and len(v) != 2):
            raise ValueError(f"type must be one of {', '.join(AVRO_TYPES)} or a nullable union like "
                             f'["null", "string"], got {v!r}')
        if non_null[0] not in AVRO_TYPES:
            raise ValueError(f"type {non_null[0]!r} is not supported (flat records only); "
                             f"use one of {', '.join(AVRO_TYPES)}")
        return v

    @property
    def base_type(self) -> str:
        """The Avro type without ``null``: ``"string"`` for ``["null", "string"]``."""
        return self.type if isinstance(self.type, str) else next(t for t in self.type if t != "null")

    @property
    def nullable(self) -> bool:
        return isinstance(self.type, list)


class DatasetSchema(BaseModel):
    """A dataset's schema: the Avro record's fields (``type``/``name``/``namespace``/``version`` optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: Literal["record"] = "record"
    name: str | None = None
    namespace: str | None = None
    version: str | None = None
    doc: str | None = None
    fields: list[SchemaField] = Field(min_length=1)

    def field(self, name: str) -> SchemaField | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def problems(self, dataset: str) -> list[tuple[tuple[str | int, ...], str]]:
        """The service's rules for ``dataset``, as (path below the schema, message) pairs; [] when valid."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        if self.name is not None and self.name.lower() != dataset:
            out.append((("name",), f"record name {self.name!r} does not match the dataset {dataset!r}"))
        seen: dict[str, str] = {}
        for i, f in enumerate(self.fields):
            key = re.sub(r"[^A-Za-z0-9]", "", f.name).upper()
            if key in seen:
                out.append((("fields", i, "name"), f"field {f.name!r} collides with {seen[key]!r} (names must "
                                                   "differ after removing non-alphanumerics, ignoring case)"))
            seen.setdefault(key, f.name)
        for name, avro in REQUIRED[dataset].items():
            f = self.field(name)
            if f is None:
                out.append((("fields",), f"the {dataset} schema must have a {name} field of type {avro}"))
            elif f.type != avro:
                out.append((self._at(name, "type"), f"{name} must be of type {avro!r} (not nullable), "
                                                     f"got {f.type!r}"))
            elif f.categorical or f.textual:
                out.append((self._at(name), f"{name} is an ID; it cannot be categorical or textual"))
        for name, (avro, may_be_null) in RESERVED[dataset].items():
            f = self.field(name)
            if f is not None and (f.base_type != avro or (f.nullable and not may_be_null)):
                allowed = f'{avro!r} or ["null", {avro!r}]' if may_be_null else repr(avro)
                out.append((self._at(name, "type"), f"reserved field {name} must be of type {allowed}, "
                                                     f"got {f.type!r}"))
        if (f := self.field("EVENT_TYPE")) is not None and dataset == "interactions" and f.categorical:
            out.append((self._at("EVENT_TYPE"), "EVENT_TYPE cannot be categorical"))
        for i, f in enumerate(self.fields):
            if f.categorical and f.base_type != "string":
                out.append((("fields", i, "categorical"), f"{f.name}: only string fields can be categorical"))
            if f.textual and (f.base_type != "string" or dataset != "items"):
                out.append((("fields", i, "textual"), f"{f.name}: only string fields of items can be textual"))
            if f.categorical and f.textual:
                out.append((("fields", i), f"{f.name} cannot be both categorical and textual"))
        if sum(f.textual for f in self.fields) > 1:
            out.append((("fields",), "at most one textual field is allowed"))
        metadata = self.metadata_fields(dataset)
        if not MIN_METADATA[dataset] <= len(metadata) <= MAX_METADATA[dataset]:
            out.append((("fields",), f"the {dataset} schema needs {MIN_METADATA[dataset]} to "
                                     f"{MAX_METADATA[dataset]} metadata fields besides "
                                     f"{', '.join(REQUIRED[dataset])}, found {len(metadata)}"))
        return out

    def max_length(self, name: str, dataset: str) -> int | None:
        """The longest value the service takes in a field of ``dataset`` (None: no limit): IDs 256 characters;
        categorical values and impressions 1,000, and every item string that is not textual (textual values
        have no limit here: the service truncates them at 20,000 characters instead of rejecting them)."""
        f = self.field(name)
        if f is None or f.base_type != "string" or f.textual:
            return None
        if name in ID_FIELDS:
            return MAX_ID_LENGTH
        if f.categorical or name == "IMPRESSION" or dataset == "items":
            return MAX_CATEGORICAL_LENGTH
        return None

    def metadata_fields(self, dataset: str) -> list[SchemaField]:
        """Fields that are neither required nor reserved for ``dataset``."""
        fixed = REQUIRED[dataset].keys() | RESERVED[dataset].keys()
        return [f for f in self.fields if f.name not in fixed]

    def ignored_fields(self, dataset: str) -> list[str]:
        """Metadata strings that are neither categorical nor textual: the service ignores them in training."""
        return [f.name for f in self.metadata_fields(dataset)
                if f.base_type == "string" and not (f.categorical or f.textual)]

    def arrow_schema(self):
        """The dataset's columns as an Arrow schema, fields in schema order (the Delta table's Spark type is
        made from it)."""
        import pyarrow as pa

        types = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
                 "double": pa.float64(), "boolean": pa.bool_()}
        return pa.schema([pa.field(f.name, types[f.base_type], f.nullable) for f in self.fields])

    def _at(self, name: str, *rest: str) -> tuple[str | int, ...]:
        return ("fields", self.names.index(name), *rest)


def camel_case(field_name: str) -> str:
    """``NUMBER_OF_RATINGS`` -> ``numberOfRatings`` (how PutEvents/PutUsers/PutItems name properties)."""
    head, *rest = field_name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)
