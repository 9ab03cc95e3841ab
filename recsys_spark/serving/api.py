"""The managed service's runtime and event operations, with the request and response members of the service
models botocore ships (requests are checked with botocore's own validator against those models).

ARNs name the config's resources by their last part: any ARN ending ``campaign/<name>`` is the campaign
``<name>``, ``filter/<name>`` the filter ``<name>``; ``trackingId`` and ``datasetArn`` are accepted as the
service's clients send them (there is one dataset group per server).

>>> campaign_name("arn:aws:personalize:us-east-1:123456789012:campaign/for-you")
'for-you'
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

import botocore.session
import pyarrow as pa
from botocore.validate import ParamValidator

from recsys_spark.config import Config
from recsys_spark.core.kernels.scorer import BLOCK_ROWS
from recsys_spark.errors import UserError
from recsys_spark.schema import camel_case
from recsys_spark.serving.landing import LandingWriter, SiblingRecords
from recsys_spark.serving.state import Ask, Campaign, DatasetGroup

log = logging.getLogger(__name__)

MAX_RESULTS, MAX_RESULTS_WITH_METADATA = 500, 50
LINGER_SECONDS = 0.002
_session = botocore.session.get_session()
MODELS = {"personalize-runtime": _session.get_service_model("personalize-runtime"),
          "personalize-events": _session.get_service_model("personalize-events")}
#: (HTTP method, path) -> (service, operation), from the models' own request URIs.
ROUTES = {(op.http["method"], op.http["requestUri"]): (service, name)
          for service, model in MODELS.items() for name in model.operation_names
          for op in [model.operation_model(name)]}


@dataclass
class ServiceError(Exception):
    """An error the SDK turns into a typed exception: ``code`` (e.g. InvalidInputException), HTTP status."""

    code: str
    message: str
    status: int = 400


def campaign_name(arn: str) -> str:
    return _named(arn, "campaign")


def _named(arn: str, kind: str) -> str:
    match = re.search(rf"(?:^|:){kind}/([A-Za-z0-9][A-Za-z0-9_-]*)$", arn or "")
    if match is None:
        raise ServiceError("InvalidInputException", f"{arn!r} is not a {kind} ARN (…:{kind}/<name>)")
    return match.group(1)


def validate(service: str, operation: str, body: dict) -> None:
    """Check ``body`` against the operation's input shape (types, required members, unknown members)."""
    report = ParamValidator().validate(body, MODELS[service].operation_model(operation).input_shape)
    if report.has_errors():
        raise ServiceError("InvalidInputException", report.generate_report())


class Scorer:
    """Scores the recommendation requests in blocks, on the event loop: the requests that reach it in one turn
    of the loop form a block, scored in the next. One product of many users by the item factors costs little
    more than one user's (the matrix is read once), so a busy server pays a fraction per request; an idle one
    scores each request alone, at once. A busy server's requests reach the loop spread over several turns, so
    when the previous block has just been answered, the next one waits up to ``LINGER_SECONDS`` for as many
    requests as that block had (its clients' next ones). Why on the loop and not in a thread of its own: the
    two threads then share one interpreter lock, and their hand-offs cost more CPU than the scoring (measured:
    1.16 ms a request against 0.34 ms of scoring, in blocks of 16). Each request is answered through its future:
    ``finish`` turns the campaign's answer into the response body (a :class:`ServiceError` for a request
    that cannot be answered)."""

    def __init__(self, max_rows: int = BLOCK_ROWS, before=lambda: None):
        self.max_rows, self.before = max_rows, before
        self._pending: list[tuple] = []
        self._expect, self._answered_at, self._lingering = 0, float("-inf"), None

    def submit(self, campaign: Campaign, ask: Ask, finish) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((campaign, ask, finish, future))
        if len(self._pending) == 1:
            if self._expect > 1 and loop.time() - self._answered_at < LINGER_SECONDS:
                self._lingering = loop.call_later(LINGER_SECONDS, self._run)
            else:
                loop.call_soon(self._run)  # after the other requests that are ready in this turn
        elif self._lingering is not None and len(self._pending) >= self._expect:
            self._lingering.cancel()
            self._lingering = None
            loop.call_soon(self._run)
        return future

    def _run(self) -> None:
        pending, self._pending, self._lingering = self._pending, [], None
        try:
            self.before()
        except Exception:  # noqa: BLE001 - score with what is known rather than fail the block
            log.exception("catching up before scoring failed")
        for start in range(0, len(pending), self.max_rows):
            by_campaign: dict[int, list] = {}
            for p in pending[start:start + self.max_rows]:  # a reload may have swapped a campaign: each
                by_campaign.setdefault(id(p[0]), []).append(p)  # request keeps the one it was given
            for group in by_campaign.values():
                try:
                    answers = group[0][0].recommend_many([ask for _, ask, _, _ in group])
                except Exception as e:  # noqa: BLE001 - fails these requests, not the server
                    answers = [e] * len(group)
                for (_, _, finish, future), answer in zip(group, answers):
                    if future.done():  # the client went away
                        continue
                    try:
                        if isinstance(answer, Exception):
                            raise answer
                        future.set_result(finish(answer))
                    except UserError as e:
                        future.set_exception(ServiceError("InvalidInputException", str(e)))
                    except Exception as e:  # noqa: BLE001 - the app answers 500 and logs it
                        future.set_exception(e)
        self._expect, self._answered_at = len(pending), asyncio.get_running_loop().time()


class Api:
    """The operations, over the server's state. ``campaigns`` maps names to loaded campaigns (replaced
    whole when a newer version is loaded, so a request sees one version from start to end)."""

    def __init__(self, config: Config, group: DatasetGroup, campaigns: dict[str, Campaign], landing: LandingWriter,
                 siblings: SiblingRecords | None = None):
        self.config, self.group, self.campaigns, self.landing = config, group, campaigns, landing
        self.siblings = siblings
        self.scorer = Scorer(before=self.catch_up)

    def call(self, operation: str, body: dict):
        """The response body of ``operation``; for recommendations, its future (answered by the
        :class:`Scorer`); for event operations, the future of their durable write too."""
        handler = getattr(self, "_" + re.sub(r"(?<!^)([A-Z])", r"_\1", operation).lower(), None)
        if handler is None:
            raise ServiceError("InvalidInputException", f"{operation} is not supported by this server", 400)
        try:
            return handler(body)
        except UserError as e:
            raise ServiceError("InvalidInputException", str(e)) from e

    # ------------------------------------------------------------------------------------------ runtime

    def _campaign(self, body: dict) -> Campaign:
        if body.get("recommenderArn"):
            raise ServiceError("InvalidInputException", "recommenders are not served here; use a campaignArn")
        name = campaign_name(body.get("campaignArn", ""))
        campaign = self.campaigns.get(name)
        if campaign is None:
            raise ServiceError("ResourceNotFoundException", f"campaign {name!r} does not exist; campaigns: "
                               + (", ".join(sorted(self.campaigns)) or "none"), 404)
        return campaign

    def _get_recommendations(self, body: dict) -> dict:
        campaign = self._campaign(body)
        if body.get("promotions"):
            raise ServiceError("InvalidInputException", "promotions are not supported")
        columns = _metadata_columns(body)
        limit = MAX_RESULTS_WITH_METADATA if columns else MAX_RESULTS
        num = body.get("numResults") or campaign.spec.num_results
        if not 1 <= num <= limit:
            raise ServiceError("InvalidInputException", f"numResults must be 1 to {limit}, got {num}")
        user, item = body.get("userId"), body.get("itemId")
        kind = campaign.recipe.request
        if kind == "ranking":
            raise ServiceError("InvalidInputException", f"campaign {campaign.spec.name} ranks lists: call "
                                                        "GetPersonalizedRanking")
        if kind == "user" and (user is None or item is not None):
            raise ServiceError("InvalidInputException", f"campaign {campaign.spec.name} ({campaign.recipe.name}) "
                                                        "needs a userId and no itemId")
        if kind == "related" and (user is None) == (item is None):
            raise ServiceError("InvalidInputException", f"campaign {campaign.spec.name} ({campaign.recipe.name}) "
                                                        "needs an itemId or a userId")
        ask = Ask(user, item, num, *self._filter(campaign, body))
        return self.scorer.submit(campaign, ask, lambda answer: {
            "itemList": _predicted(campaign, *answer[:2], columns), "recommendationId": _recommendation_id()})

    def _get_personalized_ranking(self, body: dict) -> dict:
        campaign = self._campaign(body)
        if campaign.recipe.request != "ranking":
            raise ServiceError("InvalidInputException", f"campaign {campaign.spec.name} ({campaign.recipe.name}) "
                                                        "does not rank lists: call GetRecommendations")
        listed = body.get("inputList") or []
        if not 1 <= len(listed) <= MAX_RESULTS:
            raise ServiceError("InvalidInputException", f"inputList must hold 1 to {MAX_RESULTS} items")
        columns = _metadata_columns(body)
        ask = Ask(body["userId"], None, len(listed), *self._filter(campaign, body), item_list=listed)
        return self.scorer.submit(campaign, ask, lambda answer: {"personalizedRanking": _predicted(
            campaign, *answer[:2], columns), "recommendationId": _recommendation_id()})

    def _filter(self, campaign: Campaign, body: dict) -> tuple[str | None, dict | None]:
        arn = body.get("filterArn")
        name = _named(arn, "filter") if arn else None
        campaign.check_filter(name)
        return name, body.get("filterValues")

    # ------------------------------------------------------------------------------------------ events

    def _put_events(self, body: dict):
        records = []
        for i, e in enumerate(body["eventList"]):
            if e.get("itemId") is None:
                raise ServiceError("InvalidInputException", f"eventList[{i}]: itemId is required (the interactions "
                                                            "dataset needs ITEM_ID)")
            records.append(_present({
                "userId": body.get("userId"), "sessionId": body["sessionId"], "eventType": e["eventType"],
                "sentAt": _epoch_seconds(e["sentAt"]), "itemId": e["itemId"], "eventValue": e.get("eventValue"),
                "eventId": e.get("eventId"), "properties": e.get("properties"), "impression": e.get("impression"),
                "recommendationId": e.get("recommendationId")}))
        return self._landed("interactions", records)

    def _put_users(self, body: dict):
        return self._landed("users", body["users"])

    def _put_items(self, body: dict):
        return self._landed("items", body["items"])

    def _landed(self, dataset: str, records: list[dict]):
        """Write ``records`` durably, then apply them (checked first: a record that cannot be applied fails
        the request before anything is written)."""
        apply = self.applier(dataset, records)
        done = self.landing.append(dataset, [json.dumps(_present(r)) for r in records])
        return {}, done, apply

    def applier(self, dataset: str, records: list[dict]):
        """A function that makes ``records`` (as written to the landing files) visible to the next request:
        events go to their users' histories, users and items replace their records."""
        if dataset == "interactions":
            by_user: dict[str, list[tuple]] = {}
            for r in records:
                value = r.get("eventValue")
                by_user.setdefault(r.get("userId") or r["sessionId"], []).append(
                    (r["itemId"], r["eventType"], r["sentAt"], None if value is None else float(value)))
            return lambda: [self.group.histories.add(user, rows) for user, rows in by_user.items()]
        schema = self.config.schema(dataset)
        if schema is None:
            raise ServiceError("ResourceNotFoundException", f"the dataset group has no {dataset} dataset", 404)
        id_member, id_field = {"users": ("userId", "USER_ID"), "items": ("itemId", "ITEM_ID")}[dataset]
        rows = []
        for i, record in enumerate(records):
            try:
                properties = json.loads(record["properties"]) if record.get("properties") else {}
            except ValueError as e:
                raise ServiceError("InvalidInputException", f"{dataset}[{i}].properties is not JSON: {e}") from e
            if not isinstance(properties, dict):
                raise ServiceError("InvalidInputException", f"{dataset}[{i}].properties must be a JSON object")
            rows.append({id_field: record[id_member], **_typed(properties, schema, f"{dataset}[{i}]")})
        metadata = self.group.users if dataset == "users" else self.group.items
        return lambda: metadata.put(rows)

    def catch_up(self) -> None:
        """Apply the records the server's other workers accepted since the last call (none without them)."""
        if self.siblings is None:
            return
        for dataset, records in self.siblings.poll().items():
            try:
                self.applier(dataset, records)()
            except Exception:  # noqa: BLE001 - they were checked when accepted; never fail this request
                log.exception("records of another worker could not be applied (%s)", dataset)


def _metadata_columns(body: dict) -> list[str]:
    asked = body.get("metadataColumns") or {}
    wrong = [k for k in asked if k.upper() != "ITEMS"]
    if wrong:
        raise ServiceError("InvalidInputException", f"metadataColumns: only ITEMS columns can be returned, not "
                                                    f"{', '.join(wrong)}")
    return [c for columns in asked.values() for c in columns]


def _predicted(campaign: Campaign, items: list[str], scores: list[float] | None, columns: list[str]) -> list[dict]:
    metadata = campaign.metadata(items, columns) if columns else [None] * len(items)
    out = []
    for i, item in enumerate(items):
        entry = {"itemId": item}
        if scores is not None and scores[i] is not None and math.isfinite(scores[i]):
            entry["score"] = scores[i]
        if metadata[i] is not None:
            entry["metadata"] = {k: v for k, v in metadata[i].items() if v is not None}
        out.append(entry)
    return out


def _recommendation_id() -> str:
    return f"RID-{uuid.uuid4()}"


def _epoch_seconds(value) -> int:
    """``sentAt`` as the SDK sends it (epoch seconds, fractions allowed) or an ISO-8601 time."""
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise ServiceError("InvalidInputException", f"sentAt {value!r} is not a time") from None


def _present(record: dict) -> dict:
    return {k: v for k, v in record.items() if v is not None}


def _typed(properties: dict, schema, where: str) -> dict:
    """``properties`` (camelCase keys, as PutUsers / PutItems send them) as the schema's typed fields."""
    fields = {camel_case(f.name): f for f in schema.fields} | {f.name: f for f in schema.fields}
    types = schema.arrow_schema()
    out = {}
    for key, value in properties.items():
        field = fields.get(key)
        if field is None:
            raise ServiceError("InvalidInputException", f"{where}.properties: {key} is not a field of the schema "
                               f"({', '.join(camel_case(f.name) for f in schema.fields)})")
        if value is None or value == "":
            out[field.name] = None
            continue
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        try:
            out[field.name] = pa.array([text]).cast(types.field(field.name).type)[0].as_py()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ServiceError("InvalidInputException", f"{where}.properties: {key} {value!r} is not a "
                                                        f"{field.base_type}") from None
    return out
