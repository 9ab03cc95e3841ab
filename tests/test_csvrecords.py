"""The CSV dialect of imports, without Spark: files written by pandas and Python's csv module read back
exactly, the service's backslash convention, broken lines rejected one at a time, and a file read in
segments (as Spark's tasks read it) giving exactly the records of one reading from its start."""

from __future__ import annotations

import csv
import io
import random
from itertools import pairwise

import pandas as pd
import pyarrow as pa
import pytest

from recsys_spark.core.kernels.csvrecords import (HEAD, LOOSE, MAX_RECORD_CHARS, QUOTE_IN_QUOTED, QUOTE_IN_UNQUOTED,
                                                  RECORD, SEGMENT, TAIL, UNBALANCED, SegmentReader, parse_header,
                                                  read_lines, stitch)

# Values that need quoting in every way real files have them, and some that need none.
VALUES = ["plain", "with,comma", 'He said "hi"', '"', '""', "two\nlines", "crlf\r\nin a value", "\n", "ends with\n",
          "é ü 中文 🙂", " spaced ", "back\\slash", "trailing\\", "a,\"b\"\r\nc,d", "tab\there", "x" * 3000,
          "USER_ID,ITEM_ID"]


def lines_of(text: str) -> list[str]:
    """A file's lines as Spark reads them with lineSep "\\n": each keeps its "\\r" on CRLF line ends."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def read_text(text: str) -> list[list[str] | None]:
    lines = lines_of(text)
    return [r.fields for r in read_lines(lines, lines[0])]


EXPECTED = [[f"i{k}", v] for k, v in enumerate(VALUES)]


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_pandas_files_read_back_exactly(line_end):
    frame = pd.DataFrame(EXPECTED, columns=["ITEM_ID", "DESCRIPTION"])
    assert read_text(frame.to_csv(index=False, lineterminator=line_end)) == EXPECTED


@pytest.mark.parametrize("options", [{}, {"quoting": csv.QUOTE_ALL}, {"lineterminator": "\n"},
                                     {"quoting": csv.QUOTE_NONNUMERIC}])
def test_python_csv_module_files_read_back_exactly(options):
    out = io.StringIO(newline="")
    writer = csv.writer(out, **options)
    writer.writerow(["ITEM_ID", "DESCRIPTION"])
    writer.writerows(EXPECTED)
    assert read_text("\ufeff" + out.getvalue()) == EXPECTED  # with the byte-order mark of encoding="utf-8-sig"


def test_the_services_backslash_convention_and_sparks_writer():
    # As Spark's CSV writer wrote these values (quote ", escape \, backslashes doubled inside quotes).
    text = ('ITEM_ID,DESCRIPTION\ni0,"He said \\"hi\\""\ni1,"a\\\\\\"b"\ni2,"x,\\\\\\\\y"\ni3,"x,trail\\\\"\n'
            'i4,back\\slash\ni5,"\\""\ni6,"two\nlines"\n')
    assert read_text(text) == [["i0", 'He said "hi"'], ["i1", 'a\\"b'], ["i2", "x,\\\\y"], ["i3", "x,trail\\"],
                               ["i4", "back\\slash"], ["i5", '"'], ["i6", "two\nlines"]]


def test_backslashes_in_quoted_values_of_rfc_writers():
    # An RFC writer's backslash before a quote, or at the end of a quoted value, breaks the backslash reading,
    # so the plain reading is taken; a double backslash inside quotes reads as one (the ambiguous case).
    values = ['a\\"b', "C:\\dir\\", '{"a": "x\\"y"}', "c:\\\\server, share"]
    frame = pd.DataFrame({"ITEM_ID": ["i1", "i2", "i3", "i4"], "D": values})
    lines = lines_of(frame.to_csv(index=False, quoting=csv.QUOTE_ALL))
    records = read_lines(lines, lines[0])
    assert [r.fields[1] for r in records] == values[:3] + ["c:\\server, share"]


def test_a_header_after_a_byte_order_mark_and_crlf_is_no_record():
    text = "\ufeffITEM_ID,GENRES\r\ni1,a|b\r\n\r\n\ufeffITEM_ID,GENRES\r\ni2,c\r\n"
    lines = lines_of(text)
    assert [(r.index, r.fields) for r in read_lines(lines, lines[0])] == [(1, ["i1", "a|b"]), (4, ["i2", "c"])]
    assert parse_header(lines[0]) == ["ITEM_ID", "GENRES"]


def test_broken_lines_are_rejected_one_at_a_time():
    lines = ["a,b", '"x,1', "y,2", 'z,"3"', '"ab"c,4', 'd"e,5', '"open', "still open", 'closed" junk,6', "w,7",
             '"unterminated,8']
    records = read_lines(lines, "a,b")
    assert [(r.index, r.fields, r.error) for r in records] == [
        (1, None, UNBALANCED),  # its quote closes only at line 8, broken there: line 1 alone is rejected
        (2, ["y", "2"], None), (3, ["z", "3"], None), (4, None, QUOTE_IN_QUOTED), (5, None, QUOTE_IN_UNQUOTED),
        (6, None, UNBALANCED), (7, ["still open"], None), (8, None, QUOTE_IN_UNQUOTED), (9, ["w", "7"], None),
        (10, None, UNBALANCED)]
    assert records[0].line == '"x,1'


def test_a_quoted_value_longer_than_the_limit_is_not_followed_past_it():
    lines = ["a,b", '"starts', *["x" * 1000] * (MAX_RECORD_CHARS // 1000 + 1), 'ends",1', "c,2"]
    records = read_lines(lines, "a,b")
    assert records[0].error == UNBALANCED and records[-1].fields == ["c", "2"]


# -- Segments: what Spark's tasks read -------------------------------------------------------------------


def random_file(rng: random.Random, rows: int) -> list[str]:
    """Lines of a file mixing every kind of record, writer convention, line end and mistake."""
    header = "A,B,C"
    out = [("\ufeff" if rng.random() < 0.3 else "") + header]
    pieces = ["w", "x y", ",", '"', "\n", "\r\n", "\\", "é", ""]
    for _ in range(rows):
        roll = rng.random()
        if roll < 0.05:
            out.append("")
        elif roll < 0.08:
            out.append(header)
        elif roll < 0.12:
            out.append(rng.choice(['"stray,1,2', 'bad"quote,1,2', '"ab"c,1,2', "too,few", "a,b,c,d"]))
        else:
            fields = []
            for _ in range(3):
                value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))
                if any(c in value for c in ',"\r\n\\') or rng.random() < 0.2:
                    if rng.random() < 0.5:
                        value = '"' + value.replace('"', '""').replace("\\", "/") + '"'  # RFC
                    else:
                        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'  # the service's
                fields.append(value)
            out.append(",".join(fields))
    text = "\n".join(out) + "\n"
    if rng.random() < 0.5:
        text = text.replace("\n", "\r\n")
    return lines_of(text)


def read_in_segments(lines: list[str], cuts: list[int], chunk: int) -> list[tuple]:
    """Read ``lines`` as tasks would: segments between the ``cuts`` (empty ones have no task), each fed in
    chunks of ``chunk`` lines; then the fragments stitched. (global index, fields, error, text) per record."""
    header = lines[0]
    bounds = sorted({0, len(lines), *cuts})
    records, fragments, counted = [], [], 0
    for start, end in pairwise(bounds):
        reader = SegmentReader(header, first=start == 0, last=end == len(lines))
        batches = [b for i in range(start, end, chunk) for b in reader.feed(pa.array(lines[i:min(end, i + chunk)]))]
        for row in (r for b in [*batches, *reader.close()] for r in b.to_pylist()):
            if row["kind"] == RECORD:
                fields = row["fields"] if row["fields"] is not None or row["error"] else row["line"].split(",")
                records.append((start + row["index"], fields, row["error"], row["line"]))
            elif row["kind"] == SEGMENT:
                counted += row["index"]
            else:
                assert row["kind"] in (HEAD, TAIL, LOOSE)
                fragments.append((start, row["kind"], row["index"], row["line"]))
    assert counted == len(lines)
    records += [(start + r.index, r.fields, r.error, r.line) for start, r in stitch(fragments, header)]
    return sorted(records)


def test_segments_read_exactly_what_one_reading_does():
    rng = random.Random(7)
    for case in range(100):
        lines = random_file(rng, rng.randint(1, 60))
        whole = sorted((r.index, r.fields, r.error, r.line) for r in read_lines(lines, lines[0]))
        cuts = [rng.randint(0, len(lines)) for _ in range(rng.randint(0, 6))]
        assert read_in_segments(lines, cuts, rng.randint(1, 7)) == whole, (case, cuts)


def test_a_segment_starting_inside_a_long_quoted_value_syncs_after_it():
    lines = ["A,B", "a,1", '"long', *[f"line {i}, with \"\"quotes\"\" and commas" for i in range(50)], 'end",2',
             "b,3", '"x,""y""",4']
    whole = sorted((r.index, r.fields, r.error, r.line) for r in read_lines(lines, lines[0]))
    for cut in range(len(lines)):
        assert read_in_segments(lines, [cut], 5) == whole
    assert whole[1][1] == ["long\n" + "\n".join(f'line {i}, with "quotes" and commas' for i in range(50)) + "\nend",
                           "2"]
