"""The YAML config (docs/configuration.md) loaded into typed, validated objects.

:func:`load_config` reads the file with YAML's safe loader, replaces ``${VAR}`` with environment variables,
inlines schema files (``schemas: {items: {file: items.avsc}}``), validates every key and the managed
service's schema rules, resolves relative local paths against the config's folder, and either returns a
:class:`Config` or raises one :class:`~recsys_spark.errors.ConfigError` listing every problem with its
file, line and key path::

    >>> from pathlib import Path
    >>> cfg = load_config(Path(__file__).parent.parent / "configs" / "movielens.yaml")
    >>> cfg.solution("top-picks").recipe
    'user-personalization'
"""

from __future__ import annotations

import difflib
import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo,
                      model_validator)

from recsys_spark.core import registry
from recsys_spark.errors import ConfigError
from recsys_spark.schema import DATASETS, DatasetSchema

KeyPath = tuple[str | int, ...]

ALL_USERS = "all_users"
# Credentials come from the standard AWS chain only; a config that carries them is refused.
CREDENTIAL_KEY = re.compile(r"(access\.key|secret\.key|session\.token|secret|password|credential)", re.I)
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", value):
        raise ValueError(f"{value!r} is not a valid name: 1 to 63 letters, digits, '-' or '_', "
                         "starting with a letter or digit")
    return value


def resolve_location(value: str, base_dir: str | os.PathLike = ".") -> str:
    """A URI (``s3://``, ``s3a://``, ``file:``...) as written; a local path made absolute against
    ``base_dir`` (the config file's folder, so a pipeline runs the same from any working directory)."""
    if URI.match(value) and not re.match(r"^[A-Za-z]:[\\/]", value):
        return value
    return str((Path(base_dir) / Path(value).expanduser()).resolve())


def _location(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return resolve_location(value, (info.context or {}).get("base_dir", "."))


def _batch_input(value: str, info: ValidationInfo) -> str:
    return value if value == ALL_USERS else _location(value, info)


def _recipe(value: str) -> str:
    return registry.entry(value).name


def _scalars(value: dict[str, Any]) -> dict[str, Any]:
    for key, v in value.items():
        if not isinstance(v, (str, int, float, bool, type(None))):
            raise ValueError(f"{key}: expected a number, string, boolean or null, got {type(v).__name__}")
    return value


def _spark_conf(value: dict[str, Any]) -> dict[str, Any]:
    for key in _scalars(value):
        if not key.startswith("spark."):
            raise ValueError(f"{key}: Spark settings start with 'spark.'")
        if CREDENTIAL_KEY.search(key):
            raise ValueError(f"{key}: credentials are never read from the config; they come from the "
                             "standard AWS chain (environment variables, profile, instance role)")
        if key == "spark.master":
            raise ValueError("spark.master: set it as `spark: {master: ...}`")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Name = Annotated[str, AfterValidator(_name)]
Location = Annotated[str, AfterValidator(_location)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Schemas(_Strict):
    """One schema per dataset; interactions is required, users and items optional."""

    interactions: DatasetSchema
    users: DatasetSchema | None = None
    items: DatasetSchema | None = None


class DatasetGroup(_Strict):
    """``name``; ``root``: the warehouse folder or ``s3://bucket/prefix``; ``schemas``."""

    name: Name
    root: Location
    schemas: Schemas


Ratio = Annotated[float, Field(ge=0, le=1)]


class ImportJob(_Strict):
    """A bulk import: ``dataset``, ``source`` (a CSV file or folder of CSVs), ``mode`` FULL (default:
    replaces the dataset's bulk data) or INCREMENTAL (upserts); ``max_reject_ratio`` (default 0.01): above
    this share of rejected rows the job fails and commits nothing; ``allow_extra_columns`` (default false):
    ignore CSV columns that are not in the schema instead of failing; ``only_new_files`` (default false;
    INCREMENTAL only): read only the files of the folder not imported before (a ledger of path, size and
    modification time committed with the data), so a folder of daily drops is read once per file;
    ``one_pass_min_mb`` (default 64): a source of at least this many MB whose files' first 64 kB hold no quote,
    and whose dataset's last import found no reject, is read once, its rows written as they are validated; at
    the first line that is no valid record (a reject, a quote, a blank line) that pass stops before its commit
    and the import reads the source in two passes (0: try one pass whatever the size)."""

    dataset: Literal["interactions", "users", "items"]
    source: Location
    mode: Literal["FULL", "INCREMENTAL"] = "FULL"
    max_reject_ratio: Ratio = 0.01
    allow_extra_columns: bool = False
    only_new_files: bool = False
    one_pass_min_mb: Annotated[float, Field(ge=0)] = 64

    @model_validator(mode="after")
    def _only_new_files_incremental(self):
        if self.only_new_files and self.mode != "INCREMENTAL":
            raise ValueError("only_new_files needs mode: INCREMENTAL (a FULL import replaces the data with its "
                             "source's, so it reads every file)")
        return self


class Ingest(_Strict):
    """Incremental ingestion of JSON-lines files: ``landing`` (default ``<root>/_landing``) holds one folder
    per dataset (``events/``, ``users/``, ``items/``); ``max_reject_ratio`` as for imports (default 0.01)."""

    landing: Location | None = None
    max_reject_ratio: Ratio = 0.01


class EventSettings(_Strict):
    """Which interactions a solution trains on: ``types`` maps event type -> weight (None: every type,
    weight 1); ``value_threshold`` drops events whose EVENT_VALUE is below it (None: keep all)."""

    types: dict[str, Annotated[float, Field(ge=0)]] | None = None
    value_threshold: float | None = None


class Retrain(_Strict):
    """When ``train`` and the pipeline's train step fit a new version. ``when``: ``changed`` (default) retrains
    when a dataset table the newest version pinned has changed data since (compaction and VACUUM are no
    change), or the solution's recipe, settings or events differ from that version's, or there is no version
    yet; ``always`` retrains every time. With ``new_interactions_fraction`` F (default none) and/or
    ``max_age_days`` D (default none), changed data retrains only when the interactions grew (or shrank) by at
    least F of the newest version's, or that version is at least D days old. A skipped training is a SKIPPED
    train row in ``_jobs`` saying why; batch jobs use the newest version (``train --force`` trains anyway)."""

    when: Literal["changed", "always"] = "changed"
    new_interactions_fraction: Annotated[float, Field(gt=0)] | None = None
    max_age_days: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _thresholds_need_changed(self):
        if self.when == "always" and (self.new_interactions_fraction is not None or self.max_age_days is not None):
            raise ValueError("new_interactions_fraction and max_age_days apply to when: changed, not always")
        return self


class Solution(_Strict):
    """A named recipe with its ``settings`` (each recipe's keys and defaults are in
    :mod:`recsys_spark.core.settings`), the ``events`` it trains on, and when to ``retrain``."""

    name: Name
    recipe: Annotated[str, AfterValidator(_recipe)]
    settings: Annotated[dict[str, Any], AfterValidator(_scalars)] = {}
    events: EventSettings = EventSettings()
    retrain: Retrain = Retrain()

    def recipe_settings(self):
        """The recipe's settings object, defaults filled in (validated when the config was loaded)."""
        return registry.entry(self.recipe).settings_for(self.settings)


class Filter(_Strict):
    """A named filter ``expression`` in the managed service's filter language; interaction conditions look
    at each user's ``recent_per_event_type`` most recent interactions of each event type (default 100)."""

    name: Name
    expression: Annotated[str, AfterValidator(_non_empty)]
    recent_per_event_type: Annotated[int, Field(ge=1)] = 100


class FilterLimits(_Strict):
    """The service's limits on the distinct dataset fields (such as ``Items.GENRE``) filters read:
    ``fields_per_filter`` (default 10, counted across a filter's chained expressions) and
    ``fields_per_dataset_group`` (default 20, across every filter of the config); raise them at will."""

    fields_per_filter: Annotated[int, Field(ge=1)] = 10
    fields_per_dataset_group: Annotated[int, Field(ge=1)] = 20


class BatchJob(_Strict):
    """A batch inference job: ``input`` (JSON lines file or folder, or ``all_users``), ``output`` prefix,
    ``num_results`` (1 to 500, default 25), optional ``filter`` name; ``version``: ``latest`` (default: the
    solution's newest version) or a version id to pin (as the service's job names a solution version)."""

    name: Name
    solution: str
    version: Annotated[str, AfterValidator(_non_empty)] = "latest"
    input: Annotated[str, AfterValidator(_batch_input)]
    output: Location
    num_results: Annotated[int, Field(ge=1, le=500)] = 25
    filter: str | None = None


class Campaign(_Strict):
    """A real-time endpoint (the managed service's campaign) that `recsys-spark serve` answers: ``solution``;
    ``version``: ``latest`` (default: the newest version, and a newer one is loaded when training writes it)
    or a version id to pin; ``num_results`` (default 25) when a request asks for none; ``filters``: the
    config's filters its requests may name (default: none); ``metadata_columns``: the items dataset's
    columns a request may ask for (default: none)."""

    name: Name
    solution: str
    version: Annotated[str, AfterValidator(_non_empty)] = "latest"
    num_results: Annotated[int, Field(ge=1, le=500)] = 25
    filters: list[str] = []
    metadata_columns: list[str] = []


class Serve(_Strict):
    """The real-time server. ``keys_file``: a file of ``KEYID:SECRET`` lines, the key pairs whose SigV4
    signatures are accepted (the environment variable ``RECSYS_SPARK_SERVE_KEYS`` adds comma-separated
    pairs; keys never go in the config; with none the server answers loopback clients only);
    ``reload_seconds`` (default 30): how often a campaign on ``latest`` looks for a newer version;
    ``publish_seconds`` (default 10): how often the landing file being written is closed and handed to
    `ingest`; ``max_request_bytes`` (default 1 MiB); ``workers`` (default 1): server processes sharing the
    port, each with its own copy of the campaigns' models (memory times ``workers``) and each seeing the
    events the others accept at its next request; more than one uses more than one core."""

    keys_file: Location | None = None
    reload_seconds: Annotated[float, Field(gt=0)] = 30.0
    publish_seconds: Annotated[float, Field(gt=0)] = 10.0
    max_request_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    workers: Annotated[int, Field(ge=1)] = 1


class Erasure(_Strict):
    """What `delete-users` does beyond deleting the rows. ``purge_after_hours`` (default 0: at once): how long
    the tables' older versions (time travel) keep the deleted rows before their files and log entries are
    removed; above 0, the first `maintain` after that time removes them and the deletion's job record says
    when it is due. ``outside_batch_files`` (default ``list``): batch inputs and outputs outside the
    warehouse root that hold a listed user are named in the job record; ``erase`` rewrites them without
    the users' lines. Those under the root are always rewritten."""

    purge_after_hours: Annotated[float, Field(ge=0)] = 0.0
    outside_batch_files: Literal["list", "erase"] = "list"


class Maintain(_Strict):
    """What `maintain` (and the pipeline's ``maintain`` step) does; the defaults are safe nightly while other
    jobs run. ``optimize`` (default true): compact each table's small files. ``vacuum_retention_hours``
    (default 168, Delta's own): table files replaced longer ago than this are deleted (time travel reaches
    back this far; below 168 a job still reading an old version may fail). ``keep_versions`` (default 5):
    the newest versions kept per solution; the newest and any version a campaign or batch job pins are
    always kept. ``incomplete_version_hours`` (default 24): version folders without a manifest (trainings
    killed midway) older than this are deleted. ``rejects_retention_days`` (default 90; null keeps all):
    rejected lines older than this are deleted. ``batch_output_retention_days`` (default null: keep):
    batch outputs whose run ended longer ago are deleted. ``scratch_retention_hours`` (default 48):
    leftovers of killed imports (``_staging``) and training checkpoints older than this are deleted."""

    optimize: bool = True
    vacuum_retention_hours: Annotated[float, Field(ge=0)] = 168.0
    keep_versions: Annotated[int, Field(ge=1)] = 5
    incomplete_version_hours: Annotated[float, Field(ge=1)] = 24.0
    rejects_retention_days: Annotated[float, Field(gt=0)] | None = 90.0
    batch_output_retention_days: Annotated[float, Field(gt=0)] | None = None
    scratch_retention_hours: Annotated[float, Field(ge=1)] = 48.0


class Cost(_Strict):
    """``price_per_core_hour_usd`` (what you pay, default 0.048); the managed service's prices printed beside
    ours: ``compare_per_1000_users_usd`` (batch, default 0.067) and ``compare_per_tps_hour_usd`` (real time,
    per transaction-per-second-hour, default 0.20: one request a second for an hour)."""

    price_per_core_hour_usd: Annotated[float, Field(ge=0)] = 0.048
    compare_per_1000_users_usd: Annotated[float, Field(ge=0)] = 0.067
    compare_per_tps_hour_usd: Annotated[float, Field(ge=0)] = 0.20


class S3Settings(_Strict):
    """Where S3 is and how to address it. Credentials are never here: S3A reads the standard AWS chain
    (environment variables, profile, instance or container role).

    ``endpoint``: e.g. ``http://127.0.0.1:9000`` for an S3-compatible server; None means AWS.
    ``region``: the signing region (S3-compatible servers need one); None lets S3A work it out.
    ``path_style_access``: the bucket in the path instead of the host name (needed off AWS).
    ``lock_table``: a DynamoDB table through which jobs on an S3 root take turns, one writing job at a time
    (created on first use); None: run one job at a time on an S3 root yourself (a warning says so).
    ``lock_endpoint``: the DynamoDB endpoint (None means AWS's, in ``region``).
    ``lock_wait_minutes``: how long a job waits for its turn before failing with the holder's name (120).
    """

    endpoint: str | None = None
    region: str | None = None
    path_style_access: bool = False
    lock_table: str | None = None
    lock_endpoint: str | None = None
    lock_wait_minutes: Annotated[float, Field(gt=0)] = 120.0

    def hadoop_conf(self) -> dict[str, str]:
        conf = {"spark.hadoop.fs.s3a.path.style.access": str(self.path_style_access).lower()}
        if self.endpoint:
            conf["spark.hadoop.fs.s3a.endpoint"] = self.endpoint
        if self.region:
            conf["spark.hadoop.fs.s3a.endpoint.region"] = self.region
        return conf


class SparkSettings(_Strict):
    """Applied only when this process creates the Spark session: ``master`` (default ``local[*]``) and
    ``conf`` (``spark.*`` keys)."""

    master: Annotated[str, AfterValidator(_non_empty)] = "local[*]"
    conf: Annotated[dict[str, Any], AfterValidator(_spark_conf)] = {}


class Config(_Strict):
    """A whole pipeline: the dataset group, imports, solutions, filters and their limits, batch jobs, cost, S3,
    Spark."""

    dataset_group: DatasetGroup
    imports: list[ImportJob] = []
    ingest: Ingest = Ingest()
    solutions: list[Solution] = []
    filters: list[Filter] = []
    filter_limits: FilterLimits = FilterLimits()
    batch_jobs: list[BatchJob] = []
    campaigns: list[Campaign] = []
    serve: Serve = Serve()
    erasure: Erasure = Erasure()
    maintain: Maintain = Maintain()
    cost: Cost = Cost()
    s3: S3Settings = S3Settings()
    spark: SparkSettings = SparkSettings()

    _source: Path | None = PrivateAttr(default=None)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def source(self) -> Path | None:
        """The YAML file this config was loaded from."""
        return self._source

    @property
    def warnings(self) -> list[str]:
        """Valid but probably unintended settings (e.g. string fields the service would ignore)."""
        return list(self._warnings)

    @property
    def root(self) -> str:
        return self.dataset_group.root

    @property
    def landing(self) -> str:
        """Where producers drop JSON-lines files for `ingest`."""
        return self.ingest.landing or f"{self.root.rstrip('/')}/_landing"

    def schema(self, dataset: str) -> DatasetSchema | None:
        return getattr(self.dataset_group.schemas, dataset)

    def solution(self, name: str) -> Solution:
        return _by_name(self.solutions, name, "solution")

    def filter(self, name: str) -> Filter:
        return _by_name(self.filters, name, "filter")

    def batch_job(self, name: str) -> BatchJob:
        return _by_name(self.batch_jobs, name, "batch job")

    def campaign(self, name: str) -> Campaign:
        return _by_name(self.campaigns, name, "campaign")

    def parsed_filter(self, name: str):
        """The named filter's expression as a checked :class:`~recsys_spark.core.filters.Filter`, its fields
        spelled as the schemas spell them."""
        return self.checked_filter(self.filter(name).expression)

    def checked_filter(self, expression: str):
        """``expression`` parsed and checked against the schemas and ``filter_limits.fields_per_filter``."""
        from recsys_spark.core.filters import check_filter, parse_filter

        limit = self.filter_limits.fields_per_filter
        return check_filter(parse_filter(expression), self.schema, expression, limit)

    def summary(self) -> str:
        """A few lines saying what the config defines (printed by `recsys-spark validate`)."""
        datasets = [f"{d} ({len(s.fields)} fields)" for d in DATASETS if (s := self.schema(d)) is not None]
        rows = [
            ("dataset group", f"{self.dataset_group.name} at {self.root}"),
            ("datasets", ", ".join(datasets)),
            ("imports", "; ".join(f"{j.dataset} {j.mode} from {j.source}" for j in self.imports)),
            ("solutions", ", ".join(f"{s.name} ({s.recipe})" for s in self.solutions)),
            ("filters", ", ".join(f.name for f in self.filters)),
            ("batch jobs", "; ".join(f"{j.name} ({j.solution}, {j.num_results} results"
                                     + (f", filter {j.filter}" if j.filter else "") + ")"
                                     for j in self.batch_jobs)),
            ("spark", f"{self.spark.master}" + (f", {len(self.spark.conf)} settings" if self.spark.conf else "")),
        ]
        return "\n".join([f"{self.source}: valid"] + [f"  {k:<14}{v or '-'}" for k, v in rows])


def _by_name(entries, name: str, kind: str):
    for entry in entries:
        if entry.name == name:
            return entry
    from recsys_spark.errors import UserError

    known = ", ".join(e.name for e in entries) or "none"
    raise UserError(f"no {kind} named {name!r} in the config; defined: {known}")


# ---------------------------------------------------------------------------------------------- loading


class _Document:
    """A parsed YAML (or JSON) file with the line of every key path in it."""

    def __init__(self, path: Path, problems: list[tuple[KeyPath, str]], prefix: KeyPath = ()):
        self.path, self.prefix = path, prefix
        self.lines: dict[KeyPath, int] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the file: {e.strerror or e}") from e
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            self.data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from e
        finally:
            loader.dispose()
        if node is not None:
            self._index(node, (), problems)

    def _index(self, node: yaml.Node, path: KeyPath, problems: list) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    problems.append(((*self.prefix, *path, key), "duplicate key (YAML would keep only the last)"))
                seen.add(key)
                self._index(value_node, (*path, key), problems)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*path, i), problems)

    def line(self, path: KeyPath) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def load_config(path: str | os.PathLike) -> Config:
    """Load and validate a config file; raise ConfigError naming the file, line and key of every problem.

    >>> cfg = load_config("configs/synthetic-ecommerce.yaml")   # doctest: +SKIP
    >>> [j.name for j in cfg.batch_jobs]                         # doctest: +SKIP
    ['weekly-mail', 'related-items']
    """
    if re.match(r"^s3a?://", str(path)):
        path = _fetch_from_s3(str(path))
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    problems: list[tuple[KeyPath, str]] = []
    doc = _Document(path, problems)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping with a `dataset_group` key")
    data = _expand_env(doc.data, (), problems)
    # The documents the data came from: the config, and schema files inlined into it.
    documents = [doc, *_inline_schema_files(data, path.parent, problems)]
    config = None
    try:
        config = Config.model_validate(data, context={"base_dir": str(path.parent.resolve())})
    except ValidationError as e:
        problems += [(key_path, _message(err, key_path)) for err in e.errors()
                     for key_path in [_clean_loc(err, data)]]
    problems += _schema_problems(data) + _settings_problems(data)
    if config is not None:
        problems += _cross_problems(config)
    if problems:
        raise ConfigError(_format(path, documents, problems))
    config._source = path
    config._warnings = _warnings(config)
    return config


def _fetch_from_s3(uri: str) -> Path:
    """A config stored on S3 (EMR steps read it from there), copied to a local temporary file with the
    same name; write its paths as URIs, since relative ones would resolve against that temporary folder."""
    import tempfile

    import boto3

    bucket, _, key = re.sub(r"^s3a?://", "", uri).partition("/")
    target = Path(tempfile.mkdtemp(prefix="recsys-spark-config-")) / Path(key).name
    try:
        boto3.client("s3").download_file(bucket, key, str(target))
    except Exception as e:  # noqa: BLE001 - any failure to fetch is the user's path or permission problem
        raise ConfigError(f"{uri}: cannot read the config from S3: {e}") from e
    return target


def _expand_env(value: Any, key_path: KeyPath, problems: list) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, (*key_path, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*key_path, i), problems) for i, v in enumerate(value)]
    if isinstance(value, str):
        def replace(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                problems.append((key_path, f"environment variable {m.group(1)} is not set"))
                return m.group(0)
            return os.environ[m.group(1)]

        return ENV_VAR.sub(replace, value)
    return value


def _inline_schema_files(data: dict, base_dir: Path, problems: list) -> list[_Document]:
    """Replace ``{file: x.avsc}`` schemas by the file's content (Avro JSON or YAML); return those files."""
    group = data.get("dataset_group")
    schemas = group.get("schemas") if isinstance(group, dict) else None
    documents = []
    for dataset, spec in schemas.items() if isinstance(schemas, dict) else ():
        if isinstance(spec, dict) and set(spec) == {"file"} and isinstance(spec["file"], str):
            prefix = ("dataset_group", "schemas", dataset)
            schema_doc = _Document(base_dir / spec["file"], problems, prefix)
            schemas[dataset] = _expand_env(schema_doc.data, prefix, problems)
            documents.append(schema_doc)
    return documents


def _clean_loc(err: dict, data: Any) -> KeyPath:
    """Pydantic's error location reduced to the key path in the user's data (union tags dropped)."""
    loc, out, current = err["loc"], [], data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif i == len(loc) - 1 and err["type"] in ("missing", "extra_forbidden"):
            pass
        else:
            continue
        out.append(part)
    return tuple(out)


def _message(err: dict, key_path: KeyPath) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(key_path[:-1])
        hint = difflib.get_close_matches(str(key_path[-1]), allowed, n=1)
        return ("unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
    message = err["msg"].removeprefix("Value error, ")
    if kind != "value_error" and isinstance(value, (str, int, float, bool)) and not isinstance(value, dict):
        message += f", got {value!r}"
    return message


def _allowed_keys(key_path: KeyPath) -> list[str]:
    """The field names of the config class found at ``key_path`` ([] when it is not a class)."""
    t: Any = Config
    for part in key_path:
        t = _unwrap(t)
        if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(part, str) and part in t.model_fields:
            t = t.model_fields[part].annotation
        elif get_origin(t) is list and isinstance(part, int):
            t = get_args(t)[0]
        elif get_origin(t) is dict:
            t = get_args(t)[1]
        else:
            return []
    t = _unwrap(t)
    return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else []


def _unwrap(t: Any) -> Any:
    while get_origin(t) in (Union, types.UnionType, Annotated):
        args = [a for a in get_args(t) if a is not type(None)]
        t = args[0]
    return t


def _schema_problems(data: dict) -> list[tuple[KeyPath, str]]:
    """The service's rules for each schema that is well-formed, even when other keys are not."""
    group = data.get("dataset_group")
    schemas = group.get("schemas") if isinstance(group, dict) else None
    out: list[tuple[KeyPath, str]] = []
    for dataset in DATASETS:
        try:
            schema = DatasetSchema.model_validate((schemas or {}).get(dataset) if isinstance(schemas, dict) else None)
        except ValidationError:  # reported by the validation of the whole config
            continue
        out += [(("dataset_group", "schemas", dataset, *sub), msg) for sub, msg in schema.problems(dataset)]
    return out


def _cross_problems(config: Config) -> list[tuple[KeyPath, str]]:
    """Rules across sections: unique names, references between sections."""
    out: list[tuple[KeyPath, str]] = []
    for section in ("solutions", "filters", "batch_jobs", "campaigns"):
        seen = set()
        for i, entry in enumerate(getattr(config, section)):
            if entry.name in seen:
                out.append(((section, i, "name"), f"duplicate name {entry.name!r} in {section}"))
            seen.add(entry.name)
    for i, job in enumerate(config.imports):
        if config.schema(job.dataset) is None:
            out.append((("imports", i, "dataset"), f"no schema for dataset {job.dataset!r} under "
                                                   "dataset_group.schemas"))
    from recsys_spark.core.filters import FilterError, filter_fields

    group_fields, group_limit = set(), config.filter_limits.fields_per_dataset_group
    for i, entry in enumerate(config.filters):
        try:
            fields = filter_fields(config.checked_filter(entry.expression))
        except FilterError as e:
            out.append((("filters", i, "expression"), str(e)))
            continue
        together = group_fields | fields.keys()
        if len(group_fields) <= group_limit < len(together):  # only at the filter that passes the limit
            out.append((("filters", i, "expression"),
                        f"the filters up to this one read {len(together)} distinct fields together; a dataset "
                        f"group's filters may read at most {group_limit} (filter_limits.fields_per_dataset_group)"))
        group_fields = together
    for i, solution in enumerate(config.solutions):
        if solution.events.value_threshold is not None and config.schema("interactions").field("EVENT_VALUE") is None:
            out.append((("solutions", i, "events", "value_threshold"),
                        "the interactions schema has no EVENT_VALUE field to compare with the threshold"))
    solutions = [s.name for s in config.solutions]
    filters = [f.name for f in config.filters]
    for i, job in enumerate(config.batch_jobs):
        if job.solution not in solutions:
            out.append((("batch_jobs", i, "solution"),
                        f"no solution named {job.solution!r}; defined: {', '.join(solutions) or 'none'}"))
        if job.filter is not None and job.filter not in filters:
            out.append((("batch_jobs", i, "filter"),
                        f"no filter named {job.filter!r}; defined: {', '.join(filters) or 'none'}"))
    items = config.schema("items")
    for i, campaign in enumerate(config.campaigns):
        if campaign.solution not in solutions:
            out.append((("campaigns", i, "solution"),
                        f"no solution named {campaign.solution!r}; defined: {', '.join(solutions) or 'none'}"))
        for j, name in enumerate(campaign.filters):
            if name not in filters:
                out.append((("campaigns", i, "filters", j),
                            f"no filter named {name!r}; defined: {', '.join(filters) or 'none'}"))
        for j, column in enumerate(campaign.metadata_columns):
            if items is None or items.field(column) is None:
                out.append((("campaigns", i, "metadata_columns", j),
                            f"{column} is not a field of the items schema"
                            + (f"; its fields: {', '.join(items.names)}" if items else " (there is none)")))
    return out


def _settings_problems(data: dict) -> list[tuple[KeyPath, str]]:
    """Each solution's settings against its recipe's settings class (even when other keys are invalid);
    unknown keys list the valid ones."""
    out: list[tuple[KeyPath, str]] = []
    solutions = data.get("solutions")
    for i, solution in enumerate(solutions if isinstance(solutions, list) else []):
        if not isinstance(solution, dict) or not isinstance(solution.get("settings", {}), dict):
            continue
        try:
            recipe = _recipe(str(solution.get("recipe")))
        except ValueError:  # reported by the validation of the whole config
            continue
        cls = registry.entry(recipe).settings
        try:
            cls.model_validate(solution.get("settings", {}))
        except ValidationError as e:
            for err in e.errors():
                key = err["loc"][0] if err["loc"] else ""
                if err["type"] == "extra_forbidden":
                    hint = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                    message = (f"unknown setting for recipe {recipe}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                               + f"; valid settings: {', '.join(cls.model_fields)}")
                else:
                    message = _message(err, ())
                out.append((("solutions", i, "settings", *err["loc"][:1]), message))
    return out


def _warnings(config: Config) -> list[str]:
    out = []
    for dataset in DATASETS:
        schema = config.schema(dataset)
        for name in schema.ignored_fields(dataset) if schema else []:
            out.append(f"dataset_group.schemas.{dataset}: string field {name} is neither categorical nor "
                       "textual; recipes and filters will not use it")
    return out


def format_key_path(key_path: KeyPath) -> str:
    """``("solutions", 0, "recipe")`` -> ``solutions[0].recipe``."""
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _format(path: Path, documents: list[_Document], problems: list[tuple[KeyPath, str]]) -> str:
    located = []
    for key_path, message in problems:
        # The innermost document the key came from (a schema file, else the config itself).
        doc = max((d for d in documents if key_path[:len(d.prefix)] == d.prefix), key=lambda d: len(d.prefix))
        line = doc.line(key_path[len(doc.prefix):])
        where = ("" if doc is documents[0] else f"{doc.path}, ") + (f"line {line}, " if line else "")
        located.append(((documents.index(doc), line or 0), f"  {where}{format_key_path(key_path)}: {message}"))
    header = f"{path}: {len(problems)} problem{'s' * (len(problems) != 1)} in the config:"
    return "\n".join([header, *(text for _, text in sorted(located, key=lambda p: p[0]))])
