"""The service's JSON lines, built from Arrow arrays (no Python string per item): what a batch job writes.

>>> import pyarrow as pa
>>> out = pa.record_batch({"LINE_ID": pa.array([0], pa.int64()), "INPUT": ['{"userId":"u1"}'],
...     "USER_ID": ["u1"], "ITEMS": pa.array([["i1"]], pa.list_(pa.string())),
...     "SCORES": pa.array([[0.5]], pa.list_(pa.float32())), "ERROR": pa.array([None], pa.string()),
...     "NOTE": pa.array([None], pa.string())})
>>> json_lines(out).column("value")[0].as_py()
'{"input":{"userId":"u1"},"output":{"recommendedItems":["i1"],"scores":[0.5]},"error":null}'
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

#: The scorer's output rows, one per request.
OUTPUT_SCHEMA = pa.schema([("LINE_ID", pa.int64()), ("INPUT", pa.string()), ("USER_ID", pa.string()),
                           ("ITEMS", pa.list_(pa.string())), ("SCORES", pa.list_(pa.float32())),
                           ("ERROR", pa.string()), ("NOTE", pa.string())])
#: The lines :func:`json_lines` makes of them; FAILED marks a line with an error.
LINES_SCHEMA = pa.schema([("value", pa.string()), ("FAILED", pa.bool_())])


_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def json_strings(values: pa.Array) -> pa.Array:
    """Each string as a JSON string literal (quoted, escaped); nulls stay null."""
    if not pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py():
        return pc.binary_join_element_wise('"', values, '"', "")
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values.to_pylist()],
                    pa.string())


def json_lines(out: pa.RecordBatch) -> pa.RecordBatch:
    """OUTPUT_SCHEMA rows as the service's lines: {"input": ..., "output": {"recommendedItems": [...],
    "scores": [...] or null}, "error": ...} (+ "note" when there is one), and FAILED (an error)."""
    items, scores = out.column("ITEMS"), out.column("SCORES")
    quoted = pa.ListArray.from_arrays(items.offsets, json_strings(items.values))
    numbers = pa.ListArray.from_arrays(scores.offsets, pc.cast(scores.values, pa.string()).fill_null("null"),
                                       mask=scores.is_null())
    joined = pc.binary_join_element_wise("[", pc.binary_join(numbers, ","), "]", "").fill_null("null")
    errors, notes = out.column("ERROR"), out.column("NOTE")
    error_text = json_strings(errors).fill_null("null")
    note_text = pc.binary_join_element_wise(',"note":', json_strings(notes), "").fill_null("")
    value = pc.binary_join_element_wise('{"input":', out.column("INPUT"), ',"output":{"recommendedItems":[',
                                        pc.binary_join(quoted, ",").fill_null(""), '],"scores":', joined,
                                        '},"error":', error_text, note_text, "}", "")
    return pa.record_batch([value, errors.is_valid()], names=["value", "FAILED"])
