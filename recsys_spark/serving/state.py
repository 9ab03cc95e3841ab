"""What the real-time server knows and how it answers: the dataset group's interactions and metadata (read
once from the Delta tables, then kept current by the events the server accepts) and each campaign's
solution version, scored with the batch job's own scorer
(:func:`recsys_spark.core.kernels.scorer.score_batch`) on a one-row block, so batch and real time give the
same items and scores for the same user.

>>> group = DatasetGroup.load(config)                         # doctest: +SKIP
>>> campaign = Campaign.load(config, config.campaign("for-you"), group)   # doctest: +SKIP
>>> campaign.recommend(user_id="u1", num_results=5)            # doctest: +SKIP
(['i9', 'i4', ...], [0.81, 0.77, ...])
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys_spark.config import Campaign as CampaignSpec
from recsys_spark.config import Config
from recsys_spark.core.events import event_weights
from recsys_spark.core.filters.binding import bind
from recsys_spark.core.filters.plan import EVENT_COLUMNS, FilterPlan, compile_plan, user_lists
from recsys_spark.core.kernels.scorer import REQUEST_COLUMNS, KernelSettings, score_batch
from recsys_spark.core.models.base import Model, UserBlock, matrix_of
from recsys_spark.core.registry import entry
from recsys_spark.core.store import ArrowFiles, SolutionVersion, VersionStore
from recsys_spark.errors import UserError
from recsys_spark.serving.tables import read_dataset

HISTORY_COLUMNS = ["ITEM_ID", "EVENT_TYPE", "TIMESTAMP", "EVENT_VALUE"]


def position(index: pd.Index, key) -> int:
    """``key``'s row in a unique index, -1 when absent (a hash lookup: no array built per call)."""
    try:
        return index.get_loc(key)
    except KeyError:
        return -1
PLAN_CACHE = 1024  # compiled filter bindings kept per campaign


class Histories:
    """Every user's interactions: the table read at start (sorted by user, one slice per user) plus the
    events accepted since (appended per user). Thread-safe for one writer and many readers."""

    def __init__(self, table: pa.Table):
        if "EVENT_VALUE" not in table.column_names:
            table = table.append_column("EVENT_VALUE", pa.nulls(table.num_rows, pa.float32()))
        table = table.take(pc.sort_indices(table, [("USER_ID", "ascending")]))
        users = table.column("USER_ID").combine_chunks()
        codes = users.dictionary_encode().indices.to_numpy() if len(users) else np.zeros(0, np.int64)
        starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]])) if len(codes) else codes
        self.index = pd.Index(users.take(pa.array(starts)).to_numpy(zero_copy_only=False))
        self.bounds = np.append(starts, len(codes)).astype(np.int64)
        self.base = table.select(HISTORY_COLUMNS)
        self.added: dict[str, list[tuple]] = {}
        self._lock = threading.Lock()

    def of(self, user: str) -> pa.Table:
        """The user's interactions (ITEM_ID, EVENT_TYPE, TIMESTAMP, EVENT_VALUE), oldest data first."""
        at = position(self.index, user)
        base = self.base.slice(self.bounds[at], self.bounds[at + 1] - self.bounds[at]) if at >= 0 else \
            self.base.slice(0, 0)
        with self._lock:
            added = list(self.added.get(user, ()))
        if not added:
            return base
        more = pa.table(dict(zip(HISTORY_COLUMNS, zip(*added))), schema=base.schema)
        return pa.concat_tables([base, more])

    def add(self, user: str, rows: list[tuple]) -> None:
        """Append events (ITEM_ID, EVENT_TYPE, TIMESTAMP, EVENT_VALUE) to the user's history."""
        with self._lock:
            self.added.setdefault(user, []).extend(rows)


class Metadata:
    """A users or items table by ID, with records replaced as PutUsers / PutItems arrive."""

    def __init__(self, table: pa.Table | None, key: str):
        self.key = key
        self.table = table
        self._rows = pd.Index(table.column(key).to_numpy(zero_copy_only=False)) if table is not None else None
        self.changes = 0  # bumped on every update, so caches built from the table know to rebuild
        self._lock = threading.Lock()

    def row(self, key: str) -> pa.Table | None:
        """The record of ``key`` as a one-row table, or None."""
        table, rows = self.table, self._rows
        if table is None:
            return None
        at = position(rows, key)
        return table.slice(at, 1) if at >= 0 else None

    def put(self, records: list[dict]) -> None:
        """Insert or replace records (each a dict of the table's columns; the newest wins)."""
        with self._lock:
            if self.table is None:
                return
            keys = [r[self.key] for r in records]
            kept = self.table.filter(pc.invert(pc.is_in(self.table.column(self.key), pa.array(keys, pa.string()))))
            fresh = pa.Table.from_pylist(list({r[self.key]: r for r in records}.values()), schema=self.table.schema)
            self.table = pa.concat_tables([kept, fresh]).combine_chunks()
            self._rows = pd.Index(self.table.column(self.key).to_numpy(zero_copy_only=False))
            self.changes += 1


@dataclass
class DatasetGroup:
    """The dataset group as the server holds it."""

    config: Config
    histories: Histories
    users: Metadata
    items: Metadata

    @classmethod
    def load(cls, config: Config) -> "DatasetGroup":
        columns = ["USER_ID", *[c for c in HISTORY_COLUMNS if config.schema("interactions").field(c)]]
        interactions = read_dataset(config, "interactions", columns)
        if interactions is None:
            raise UserError(f"the interactions dataset has no table at {config.root}; import it first")
        return cls(config, Histories(interactions), Metadata(read_dataset(config, "users"), "USER_ID"),
                   Metadata(read_dataset(config, "items"), "ITEM_ID"))


class Campaign:
    """One campaign: its solution version loaded with pyarrow, answering with the batch job's scorer."""

    def __init__(self, spec: CampaignSpec, group: DatasetGroup, version: SolutionVersion, model: Model):
        config = group.config
        self.spec, self.group, self.version, self.model = spec, group, version, model
        self.solution = config.solution(spec.solution)
        self.recipe = entry(version.recipe)
        self.settings = self.recipe.settings_for(version.manifest["settings"])
        self.fresh_after = int(version.manifest.get("newest_interaction", 2**62))
        self.factors, self.factor_rows = None, None
        if model.users is not None:
            self.factor_rows = pd.Index(model.users.column("USER_ID").to_numpy(zero_copy_only=False))
            self.factors = matrix_of(model.users.column("FACTORS"))
        self._plans: dict[tuple, FilterPlan] = {}
        self._plans_at = group.items.changes

    @classmethod
    def load(cls, config: Config, spec: CampaignSpec, group: DatasetGroup, store: VersionStore | None = None):
        store = store or VersionStore(config.root, ArrowFiles(config.s3))
        version = store.get(spec.solution, None if spec.version == "latest" else spec.version)
        return cls(spec, group, version, store.load_model(version))

    # ------------------------------------------------------------------------------------------ scoring

    def recommend(self, user_id: str | None = None, item_id: str | None = None, num_results: int | None = None,
                  filter_name: str | None = None, filter_values: dict | None = None,
                  item_list: list[str] | None = None) -> tuple[list[str], list[float] | None, str | None]:
        """(item IDs best first, their scores or None for popular items, a note) for one request, exactly as
        a batch line with the same fields would be answered."""
        k = num_results or self.spec.num_results
        plan = self._plan(filter_name, filter_values)
        history = self.group.histories.of(user_id) if user_id is not None else None
        block = self._block(user_id, history)
        lists = (self._user_lists(plan, filter_name, user_id, history)
                 if plan is not None and user_id is not None and item_id is None else None)
        batch = pa.record_batch({
            "LINE_ID": pa.array([0], pa.int64()), "INPUT": pa.array([""]),
            "USER_ID": pa.array([user_id if item_id is None else None], pa.string()),
            "QUERY_ITEM": pa.array([item_id], pa.string()),
            "ITEM_LIST": pa.array([item_list], pa.list_(pa.string())), "ERROR": pa.array([None], pa.string()),
            "BINDING_ID": pa.array([0], pa.int32()),
            **{f"F_{c.upper()}": pa.array([None if lists is None else lists[c]],
                                          pa.list_(pa.int32() if c == "applies" else pa.string()))
               for c in ("include", "exclude", "applies")}}).select(REQUEST_COLUMNS)
        settings = KernelSettings(k, self.settings.exclude_seen, [plan] if plan is not None else [],
                                  item_list is not None, self.fresh_after if self.factors is not None else None)
        out = score_batch(self.model, batch, block, settings)
        scores = out.column("SCORES")[0].as_py()
        return out.column("ITEMS")[0].as_py(), scores, out.column("NOTE")[0].as_py()

    def _block(self, user_id: str | None, history: pa.Table | None) -> UserBlock:
        """The user's weighted history (items of the catalog only) and stored factors, as the batch job
        builds them from the interactions and the version's users table."""
        if history is None or history.num_rows == 0:
            block = UserBlock.from_lists([[]])
        else:
            events = self.solution.events
            values = history.column("EVENT_VALUE").to_numpy(zero_copy_only=False).astype(np.float64)
            weights = event_weights(history.column("EVENT_TYPE").to_numpy(zero_copy_only=False), values,
                                    events.types, events.value_threshold)
            items = self.model.positions(history.column("ITEM_ID").to_numpy(zero_copy_only=False))
            keep = (weights > 0) & (items >= 0)
            times = history.column("TIMESTAMP").to_numpy()[keep]
            block = UserBlock(np.array([0, int(keep.sum())]), items[keep].astype(np.int64), weights[keep],
                              times.astype(np.int64))
        if self.factors is not None:
            at = position(self.factor_rows, user_id) if user_id is not None else -1
            block.factors = (self.factors[[at]] if at >= 0 else np.zeros((1, self.factors.shape[1]), np.float32))
            newest = block.timestamps.max(initial=0)
            block.known = np.array([at >= 0 and newest <= self.fresh_after])
        return block

    # ------------------------------------------------------------------------------------------ filters

    def _plan(self, name: str | None, values: dict | None) -> FilterPlan | None:
        if name is None:
            return None
        if name not in self.spec.filters:
            raise UserError(f"filter {name!r} is not one of campaign {self.spec.name}'s filters: "
                            + (", ".join(self.spec.filters) or "it has none"))
        if self.group.items.changes != self._plans_at:  # item metadata changed: masks are stale
            self._plans, self._plans_at = {}, self.group.items.changes
        key = (name, json.dumps(values or {}, sort_keys=True))
        plan = self._plans.get(key)
        if plan is None:
            config = self.group.config
            plan = compile_plan(bind(config.parsed_filter(name), values or {}), self.model.item_ids,
                                self.group.items.table, config.schema)
            if len(self._plans) >= PLAN_CACHE:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    def _user_lists(self, plan: FilterPlan, name: str, user_id: str, history: pa.Table) -> dict | None:
        if not plan.needs_user_lists:
            return None
        config = self.group.config
        events = pa.table({"USER_ID": pa.array([user_id] * history.num_rows, pa.string()),
                           **{c: history.column(c) for c in EVENT_COLUMNS if c != "USER_ID"}})
        lists = user_lists(plan, events, self.group.users.row(user_id), config.schema,
                           config.filter(name).recent_per_event_type)
        if lists.num_rows == 0:
            return None
        return {c: lists.column(c)[0].as_py() for c in ("include", "exclude", "applies")}

    # ------------------------------------------------------------------------------------------ metadata

    def metadata(self, item_ids: list[str], columns: list[str]) -> list[dict | None]:
        """The asked columns of each item (strings, as the service returns them), for ``metadataColumns``."""
        allowed = set(self.spec.metadata_columns)
        wrong = [c for c in columns if c not in allowed]
        if wrong:
            raise UserError(f"metadataColumns {', '.join(wrong)} are not among campaign {self.spec.name}'s "
                            f"metadata_columns: {', '.join(self.spec.metadata_columns) or 'none'}")
        out = []
        for item in item_ids:
            row = self.group.items.row(item)
            values = row.to_pylist()[0] if row is not None else {}
            out.append({c: None if values.get(c) is None else str(values[c]) for c in columns})
        return out
