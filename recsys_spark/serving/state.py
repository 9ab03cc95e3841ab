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
PLAN_CACHE = 1024  # compiled filter bindings kept per campaign


def position(index: pd.Index, key) -> int:
    """``key``'s row in a unique index, -1 when absent (a hash lookup: no array built per call)."""
    try:
        return index.get_loc(key)
    except KeyError:
        return -1


NO_FILTER = FilterPlan()  # the binding of requests without a filter, beside filtered ones in one block


@dataclass(frozen=True)
class Ask:
    """One recommendation request as a campaign answers it (the fields of a batch input line)."""

    user_id: str | None = None
    item_id: str | None = None
    num_results: int | None = None
    filter_name: str | None = None
    filter_values: dict | None = None
    item_list: list[str] | None = None


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
        self._indexed = (table, self._index(table))
        self.changes = 0  # bumped on every update, so caches built from the table know to rebuild
        self._lock = threading.Lock()

    def row(self, key: str) -> pa.Table | None:
        """The record of ``key`` as a one-row table, or None."""
        table, rows = self._indexed  # one read: the scorer thread may look while an update swaps them
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
            table = pa.concat_tables([kept, fresh]).combine_chunks()
            self._indexed = (table, self._index(table))
            self.changes += 1

    @property
    def table(self) -> pa.Table | None:
        return self._indexed[0]

    def _index(self, table: pa.Table | None) -> pd.Index | None:
        return pd.Index(table.column(self.key).to_numpy(zero_copy_only=False)) if table is not None else None


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
        answer = self.recommend_many([Ask(user_id, item_id, num_results, filter_name, filter_values, item_list)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def recommend_many(self, asks: list[Ask]) -> list[tuple | Exception]:
        """:meth:`recommend` for many requests at once, as the batch job scores a block of lines: one product
        of all their users by the item factors (the matrix is read once, not once per request), one
        filter-list computation per filter. A request that cannot be answered gets its exception."""
        answers: list = [None] * len(asks)
        groups: dict[tuple, list[int]] = {}
        for i, ask in enumerate(asks):
            groups.setdefault((ask.num_results or self.spec.num_results, ask.item_list is not None), []).append(i)
        for (k, ranking), members in groups.items():
            plans, bindings = [], []
            for i in members:
                try:
                    bindings.append(self._binding(asks[i], plans))
                except UserError as e:
                    answers[i] = e
            members = [i for i in members if answers[i] is None]
            if members:
                out = self._score([asks[i] for i in members], bindings, plans, k, ranking)
                for i, items, scores, note in zip(members, *out):
                    answers[i] = (items, scores, note)
        return answers

    def _score(self, asks: list[Ask], bindings: list[int], plans: list[FilterPlan], k: int, ranking: bool):
        """(items, scores, notes) of requests that share ``k`` and kind, through the batch job's scorer."""
        users = [a.user_id if a.item_id is None else None for a in asks]
        histories = [self.group.histories.of(u) for u in users if u is not None]
        lengths = np.zeros(len(asks), dtype=np.int64)
        lengths[[i for i, u in enumerate(users) if u is not None]] = [h.num_rows for h in histories]
        # The users' interactions in one table; ``row``: the request of each.
        history = pa.concat_tables(histories) if lengths.sum() else None
        row = np.repeat(np.arange(len(asks)), lengths)
        lists = self._user_lists(asks, history, row, bindings, plans)
        string_lists = pa.list_(pa.string())
        batch = pa.record_batch({
            "LINE_ID": pa.array(np.arange(len(asks))), "INPUT": pa.nulls(len(asks), pa.string()),
            "USER_ID": pa.array(users, pa.string()), "QUERY_ITEM": pa.array([a.item_id for a in asks], pa.string()),
            "ITEM_LIST": pa.array([a.item_list for a in asks], string_lists),
            "ERROR": pa.nulls(len(asks), pa.string()), "BINDING_ID": pa.array(bindings, pa.int32()),
            "F_INCLUDE": pa.array(lists["include"], string_lists),
            "F_EXCLUDE": pa.array(lists["exclude"], string_lists),
            "F_APPLIES": pa.array(lists["applies"], pa.list_(pa.int32()))}).select(REQUEST_COLUMNS)
        settings = KernelSettings(k, self.settings.exclude_seen, plans if any(p.rules for p in plans) else [],
                                  ranking, self.fresh_after if self.factors is not None else None)
        out = score_batch(self.model, batch, self._block(users, history, row), settings)
        return [out.column(c).to_pylist() for c in ("ITEMS", "SCORES", "NOTE")]

    def _block(self, users: list[str | None], history: pa.Table | None, row: np.ndarray) -> UserBlock:
        """The users' weighted histories (items of the catalog only) and stored factors, as the batch job
        builds them from the interactions and the version's users table."""
        rows = len(users)
        if history is not None:
            events = self.solution.events
            values = history.column("EVENT_VALUE").to_numpy().astype(np.float64)
            weights = event_weights(history.column("EVENT_TYPE").to_numpy(zero_copy_only=False), values,
                                    events.types, events.value_threshold)
            items = self.model.positions(history.column("ITEM_ID").to_numpy(zero_copy_only=False))
            keep = (weights > 0) & (items >= 0)
            times = history.column("TIMESTAMP").to_numpy().astype(np.int64)[keep]
            row, items, weights = row[keep], items[keep].astype(np.int64), weights[keep]
        else:
            times, items, weights = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        block = UserBlock(np.concatenate([[0], np.cumsum(np.bincount(row, minlength=rows))]), items, weights, times)
        if self.factors is not None:
            at = np.array([-1 if u is None else position(self.factor_rows, u) for u in users], dtype=np.int64)
            block.factors = np.where((at >= 0)[:, None], self.factors[np.maximum(at, 0)], np.float32(0))
            newest = np.zeros(rows, dtype=np.int64)
            np.maximum.at(newest, row, times)
            block.known = (at >= 0) & (newest <= self.fresh_after)
        return block

    # ------------------------------------------------------------------------------------------ filters

    def check_filter(self, name: str | None) -> None:
        """Refuse a filter the campaign does not offer (before the request is queued for scoring)."""
        if name is not None and name not in self.spec.filters:
            raise UserError(f"filter {name!r} is not one of campaign {self.spec.name}'s filters: "
                            + (", ".join(self.spec.filters) or "it has none"))

    def _binding(self, ask: Ask, plans: list[FilterPlan]) -> int:
        """The index in ``plans`` of the request's compiled filter (appended when new; no filter: a plan
        without rules)."""
        plan = self._plan(ask.filter_name, ask.filter_values) if ask.filter_name is not None else NO_FILTER
        for i, known in enumerate(plans):
            if known is plan:
                return i
        plans.append(plan)
        return len(plans) - 1

    def _plan(self, name: str, values: dict | None) -> FilterPlan:
        self.check_filter(name)
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

    def _user_lists(self, asks: list[Ask], history: pa.Table | None, row: np.ndarray, bindings: list[int],
                    plans: list[FilterPlan]) -> dict:
        """Each request's per-user filter lists (include, exclude, applies; None where there are none), from
        its user's interactions (``history``, request ``row`` of each) and record, one computation per
        filter binding."""
        out = {c: [None] * len(asks) for c in ("include", "exclude", "applies")}
        config = self.group.config
        for b, plan in enumerate(plans):
            rows = [i for i, a in enumerate(asks) if bindings[i] == b and a.user_id is not None and a.item_id is None]
            if not plan.needs_user_lists or not rows:
                continue
            events = None
            if history is not None:
                mine, of = history, row  # the common case: one filter for the whole block
                if len(rows) < len(asks):
                    chosen = np.isin(row, rows)
                    mine, of = history.filter(pa.array(chosen)), row[chosen]
                if mine.num_rows:
                    users = np.array([a.user_id for a in asks], dtype=object)[of]
                    events = pa.table({"USER_ID": pa.array(users, pa.string()),
                                       **{c: mine.column(c) for c in EVENT_COLUMNS if c != "USER_ID"}})
            records = [r for u in dict.fromkeys(asks[i].user_id for i in rows)
                       if (r := self.group.users.row(u)) is not None]
            lists = user_lists(plan, events, pa.concat_tables(records) if records else None, config.schema,
                               config.filter(asks[rows[0]].filter_name).recent_per_event_type)
            found = dict(zip(lists.column("USER_ID").to_pylist(), lists.select(list(out)).to_pylist()))
            for i in rows:
                for c, value in found.get(asks[i].user_id, {}).items():
                    out[c][i] = value
        return out

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
