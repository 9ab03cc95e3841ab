"""The solution-version store: write, list and load trained versions, through any :class:`Files`.

A solution version is an immutable folder ``<root>/solutions/<solution>/<version>/`` holding the model's
tables as Parquet and ``manifest.json``, written last, so a folder without one is an unfinished run and is
ignored: the recipe, every setting with defaults filled in, the event settings, the Delta version of each
table it trained on, row counts, training seconds and the offline metrics.

The Spark jobs use the store with Spark's file system (:mod:`recsys_spark.solutions.store`); a process
without Spark (the real-time server, a script) uses :class:`ArrowFiles` (local folders and S3).

>>> store = VersionStore("/data/warehouse", ArrowFiles())                     # doctest: +SKIP
>>> model = store.load_model(store.get("top-picks"))                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys_spark.core.models.base import Model
from recsys_spark.core.registry import entry
from recsys_spark.errors import UserError
from recsys_spark.killpoints import kill_point

MANIFEST = "manifest.json"
USER_FACTORS = "users"  # the table of trained users' factors (USER_ID, FACTORS), where a recipe has one


@dataclass(frozen=True)
class SolutionVersion:
    """One trained version: where it is and what its manifest says."""

    solution: str
    version: str
    path: str
    manifest: dict

    @property
    def recipe(self) -> str:
        return self.manifest["recipe"]

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @property
    def has_user_factors(self) -> bool:
        return USER_FACTORS in self.manifest["tables"]


class Files(Protocol):
    """The file operations the store needs, on the root's own URIs."""

    def list_folders(self, uri: str) -> list[str]: ...  # names, sorted; [] when ``uri`` does not exist
    def exists(self, uri: str) -> bool: ...
    def read_text(self, uri: str) -> str: ...
    def write_text(self, uri: str, text: str) -> None: ...
    def read_table(self, uri: str) -> pa.Table: ...  # a Parquet folder
    def write_table(self, uri: str, table: pa.Table) -> None: ...


class VersionStore:
    """The versions of every solution under a warehouse ``root``."""

    def __init__(self, root: str, files: Files):
        self.root, self.files = root.rstrip("/"), files

    def solution_path(self, solution: str) -> str:
        return f"{self.root}/solutions/{solution}"

    def list(self, solution: str) -> list[SolutionVersion]:
        """The solution's complete versions, oldest first."""
        base = self.solution_path(solution)
        out = []
        for name in self.files.list_folders(base):
            manifest = f"{base}/{name}/{MANIFEST}"
            if self.files.exists(manifest):
                facts = json.loads(self.files.read_text(manifest))
                out.append(SolutionVersion(solution, name, f"{base}/{name}", facts))
        return out

    def get(self, solution: str, version: str | None = None) -> SolutionVersion:
        """The named version, or the newest one; a clear error when there is none."""
        versions = self.list(solution)
        if not versions:
            raise UserError(f"solution {solution!r} has no trained version yet; run `recsys-spark train "
                            f"--solution {solution}` first")
        if version is None:
            return versions[-1]
        for v in versions:
            if v.version == version:
                return v
        raise UserError(f"solution {solution!r} has no version {version!r}; versions: "
                        + ", ".join(v.version for v in versions))

    def load_model(self, version: SolutionVersion, user_factors: bool = True) -> Model:
        """The fitted model, from its tables only (no training data is read). ``user_factors=False`` leaves
        the per-user table out (the batch job shuffles it with the histories instead)."""
        recipe = entry(version.recipe)
        names = [n for n in version.manifest["tables"] if user_factors or n != USER_FACTORS]
        tables = {name: self.files.read_table(f"{version.path}/{name}") for name in names}
        return recipe.model.from_tables(tables, recipe.settings_for(version.manifest["settings"]))

    def save(self, solution: str, model: Model, manifest: dict) -> SolutionVersion:
        """Write the model's tables, then the manifest (last: its presence marks the version complete).
        ``manifest`` holds the recipe, settings and training facts; the store adds the rest."""
        now = datetime.now(timezone.utc)
        version = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"  # sortable by time, unique across runs
        path = f"{self.solution_path(solution)}/{version}"
        tables = model.tables()
        for name, table in tables.items():
            self.files.write_table(f"{path}/{name}", table)
        kill_point("train.tables-written")  # a folder without its manifest: an unfinished version
        manifest = {"solution": solution, "version": version, "created_at": now.isoformat(timespec="seconds"),
                    "items": model.n_items, "tables": sorted(tables), **manifest}
        self.files.write_text(f"{path}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return SolutionVersion(solution, version, path, manifest)


class ArrowFiles:
    """:class:`Files` through pyarrow: local paths and ``file:`` URIs, and ``s3://`` / ``s3a://`` with the
    config's S3 settings (``endpoint``, ``region``, ``path_style_access``; credentials from the standard
    AWS chain, as Spark's S3A reads them).

    >>> files = ArrowFiles()
    >>> files.exists("/nonexistent/manifest.json")
    False
    """

    def __init__(self, s3=None):
        self.s3 = s3
        self._s3fs = None

    def _resolve(self, uri: str) -> tuple[pafs.FileSystem, str]:
        parsed = urlparse(uri)
        if parsed.scheme in ("s3", "s3a"):
            if self._s3fs is None:
                self._s3fs = _s3_filesystem(self.s3)
            return self._s3fs, f"{parsed.netloc}{parsed.path}"
        if parsed.scheme in ("", "file"):
            return pafs.LocalFileSystem(), parsed.path if parsed.scheme else uri
        raise UserError(f"{uri}: only local paths and s3:// are readable without Spark")

    def list_folders(self, uri: str) -> list[str]:
        fs, path = self._resolve(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def exists(self, uri: str) -> bool:
        fs, path = self._resolve(uri)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_text(self, uri: str) -> str:
        fs, path = self._resolve(uri)
        with fs.open_input_stream(path) as f:
            return f.read().decode("utf-8")

    def write_text(self, uri: str, text: str) -> None:
        fs, path = self._resolve(uri)
        with fs.open_output_stream(path) as f:
            f.write(text.encode("utf-8"))

    def read_table(self, uri: str) -> pa.Table:
        fs, path = self._resolve(uri)
        # Spark's part files and markers (_SUCCESS, .crc) sit beside the data; only part files are read.
        return pq.read_table(path, filesystem=fs, partitioning=None,
                             ignore_prefixes=["_", "."])

    def write_table(self, uri: str, table: pa.Table) -> None:
        fs, path = self._resolve(uri)
        fs.create_dir(path, recursive=True)
        pq.write_table(table, f"{path}/part-00000.parquet", filesystem=fs)


def _s3_filesystem(s3) -> pafs.S3FileSystem:
    options = {}
    if s3 is not None and s3.endpoint:
        endpoint = urlparse(s3.endpoint)
        options["endpoint_override"] = endpoint.netloc or endpoint.path
        options["scheme"] = endpoint.scheme or "https"
    if s3 is not None and s3.region:
        options["region"] = s3.region
    return pafs.S3FileSystem(**options)
