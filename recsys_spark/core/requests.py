"""A request line of the service's batch input (JSON), checked: what the batch job reads per line.

A line that cannot be served keeps its text and gets an error message instead of stopping the job.
Request kinds (a recipe's ``request`` in :mod:`recsys_spark.core.registry`): ``user`` (``userId``),
``related`` (``itemId``, or ``userId`` for a user query of an item model), ``ranking`` (``userId`` +
``itemList``). Any line may carry ``filterValues`` (parameter -> the service's quoted value string).

>>> parse_line('{"userId": "42"}', "user")
('{"userId": "42"}', '42', None, None, None, None)
>>> parse_line('{"userId": 42}', "user")[-1]
'userId must be a non-empty string of at most 256 characters, got 42'
"""

from __future__ import annotations

import json

from recsys_spark.core.filters.binding import MAX_KEYS

KNOWN_FIELDS = ("userId", "itemId", "itemList", "filterValues")
MAX_ID, MAX_LIST = 256, 500


def parse_line(text: str, kind: str):
    """(input JSON, userId, itemId, itemList, filterValues as canonical JSON, error) for one line."""
    try:
        record = json.loads(text)
    except ValueError as e:
        return json.dumps(text), None, None, None, None, f"not valid JSON: {e}"
    if not isinstance(record, dict):
        return text, None, None, None, None, f"expected a JSON object, got {type(record).__name__}"
    error = _check(record, kind)
    if error:
        return text, None, None, None, None, error
    values = record.get("filterValues")
    return (text, record.get("userId"), record.get("itemId"), record.get("itemList"),
            json.dumps(values, sort_keys=True) if values else None, None)


def _check(record: dict, kind: str) -> str | None:
    unknown = sorted(set(record) - set(KNOWN_FIELDS))
    if unknown:
        return f"unknown field {unknown[0]!r}; the fields are {', '.join(KNOWN_FIELDS)}"
    for key in ("userId", "itemId"):
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or not value or len(value) > MAX_ID):
            return f"{key} must be a non-empty string of at most {MAX_ID} characters, got {json.dumps(value)[:60]}"
    items = record.get("itemList")
    if items is not None and (not isinstance(items, list) or not all(isinstance(i, str) and i for i in items)):
        return "itemList must be a list of item ID strings"
    if items is not None and not 1 <= len(items) <= MAX_LIST:
        return f"itemList must hold 1 to {MAX_LIST} items, got {len(items)}"
    values = record.get("filterValues")
    if values is not None and (not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())):
        return 'filterValues must be an object of strings, e.g. {"GENRE": "\\"drama\\""}'
    if values is not None and len(values) > MAX_KEYS:
        return f"filterValues has {len(values)} keys, at most {MAX_KEYS} are allowed"
    user, item = record.get("userId"), record.get("itemId")
    if kind == "user" and user is None:
        return "userId is required by this solution's recipe"
    if kind == "related" and user is None and item is None:
        return "itemId (related items) or userId (a user's recommendations) is required"
    if kind == "ranking" and (user is None or items is None):
        return "userId and itemList are required by personalized-ranking"
    if kind != "ranking" and items is not None:
        return "itemList is only read by personalized-ranking solutions"
    return None
