r"""CSV records from lines of text, as real tools write them: what the import runs inside Spark tasks.

One reading serves RFC 4180 (pandas, Python's csv module, PostgreSQL, Excel) and the managed service's
backslash convention (its documentation, Spark's CSV writer, this project's export):

* fields are separated by ``,``; a record ends at a line end (``\n`` or ``\r\n``) outside quotes;
* a field that starts with ``"`` is quoted: it may hold commas and line breaks (kept exactly, ``\r\n`` or
  ``\n``); inside it ``""`` and ``\"`` are a quote and ``\\`` a backslash; a backslash before anything
  else is itself; the closing quote must be followed by ``,`` or the line end;
* an unquoted field is taken as written, and may not hold a quote;
* a UTF-8 byte-order mark at the start of a line is dropped; blank lines and lines equal to the header
  are not records.

A record begins at a line start and continues on the next line while a quoted value is open. When it does
not end properly (no closing quote before the end of the file or within :data:`MAX_RECORD_CHARS`, or broken
quoting), its first line alone is rejected and reading resumes on the next line: one stray quote costs one
line, never the rest of the file.

Spark splits a file into segments (byte ranges), read by separate tasks that never see the lines before
theirs. A segment that does not start its file cannot know whether its first line starts a record or
continues a quoted value: :class:`SegmentReader` reads on from both hypotheses until they agree on a record
start (usually at once or on the next line), which is then a record start whatever came before. The lines
before that point and a record still open at the segment's end are handed out as fragments; joined in file
order and read with :func:`read_lines`, they give the missing records, so the whole equals one reading of
the file from its start.

>>> records = read_lines(['a,b', '"say ""hi"", ok",1', '"two', 'lines",\\2'], header="a,b")
>>> [(r.index, r.fields) for r in records]
[(1, ['say "hi", ok', '1']), (2, ['two\nlines', '\\2'])]
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: A record that spans lines must end within this many characters (the service's longest values, a textual
#: field of 20,000 characters beside 100 metadata fields of up to 1,000, fit several times).
MAX_RECORD_CHARS = 1 << 20
BOM = "\ufeff"
UNBALANCED = "malformed CSV line: unbalanced quotes"
QUOTE_IN_QUOTED = 'malformed CSV line: a quote inside a quoted value must be doubled ("") or escaped (\\")'
QUOTE_IN_UNQUOTED = "malformed CSV line: a quote inside an unquoted value (quote the value, double the quote)"
NOT_UTF8 = "malformed CSV line: not UTF-8 text (save the file as UTF-8)"

# What a segment gives: records, fragments (lines for `read_lines`: before the sync point, an open record at
# the end, or every line when no sync point was found) and one row with its number of lines.
RECORD, HEAD, TAIL, LOOSE, SEGMENT = 0, 1, 2, 3, 4
SCHEMA = pa.schema([("kind", pa.int8()), ("index", pa.int64()), ("line", pa.string()),
                    ("fields", pa.list_(pa.string())), ("error", pa.string())])

# Inside quotes a backslash pairs with the next character, so `\"` never closes a value; in the plain RFC
# reading a backslash is an ordinary character.
_BODY = {True: re.compile(r'(?:[^"\\]|""|\\[\s\S])*'), False: re.compile(r'(?:[^"]|"")*')}
_UNESCAPE = {True: re.compile(r'["\\](["\\])'), False: re.compile(r'"(")')}


class Record(NamedTuple):
    """Lines ``index`` to ``end - 1`` read as one record: its text (line breaks inside, none at the end) and
    its fields; or, with ``error``, line ``index`` rejected alone (``fields`` None)."""

    index: int
    end: int
    line: str | None
    fields: list[str] | None = None
    error: str | None = None


def normalized(line: str) -> str:
    """A line as a record starts: no leading byte-order mark, no trailing carriage return."""
    return (line[1:] if line.startswith(BOM) else line).rstrip("\r")


class Header(NamedTuple):
    """A file's header line (normalized) and its number of columns."""

    line: str
    columns: int

    @classmethod
    def of(cls, line: str) -> Header:
        return cls(normalized(line), len(parse_header(line)))


def parse_header(line: str) -> list[str]:
    """A header line's column names; ValueError when its quoting is broken."""
    record = _read([line], 0, eof=True)
    if record.error:
        raise ValueError(record.error)
    return record.fields


def read_record(lines: Sequence[str | None], i: int, columns: int, eof: bool) -> Record | None:
    r"""The record starting at line ``i`` of a file with ``columns`` columns; None when it is still open at the
    end of ``lines`` and more may come (not ``eof``). A None line stands for one that is not UTF-8.

    Read with backslash escapes inside quotes; when that reading breaks or gives another number of columns,
    the plain RFC 4180 reading (backslashes as they are) is taken if it gives ``columns`` fields: an RFC
    writer's ``"C:\dir\"`` or ``"{""a"": ""x\""y""}"`` reads as written.
    """
    record = _read(lines, i, eof)
    if record is None or (record.error is None and len(record.fields) == columns):
        return record
    plain = _read(lines, i, eof, escapes=False)
    return plain if plain is not None and plain.error is None and len(plain.fields) == columns else record


def _read(lines: Sequence[str | None], i: int, eof: bool, in_quotes: bool = False,
          escapes: bool = True) -> Record | None:
    """One reading of the record at line ``i``: with backslash ``escapes`` or without; ``in_quotes``: as if
    line ``i`` continued an open quoted value."""
    body, unescape = _BODY[escapes], _UNESCAPE[escapes]
    first = lines[i]
    if first is None:
        return Record(i, i + 1, None, error=NOT_UTF8)
    line = first if in_quotes else (first[1:] if first.startswith(BOM) else first)
    j, p, size = i, 0, len(line)
    fields: list[str] = []
    pieces: list[str] | None = [] if in_quotes else None  # an open quoted value

    def broken(reason: str) -> Record:
        return Record(i, i + 1, normalized(first), error=reason if j == i else UNBALANCED)

    while True:
        end = len(line.rstrip("\r"))
        if pieces is None:  # at a field's start
            if p < end and line[p] == '"':
                pieces, p = [], p + 1
                continue
            comma = line.find(",", p, end)
            text = line[p:end if comma < 0 else comma]
            if '"' in text:
                return broken(QUOTE_IN_UNQUOTED)
            fields.append(text)
            if comma < 0:
                break
            p = comma + 1
            continue
        q = body.match(line, p).end()
        if q < len(line) and line[q] == '"':  # the closing quote
            pieces.append(line[p:q])
            fields.append(unescape.sub(r"\1", "".join(pieces)))
            pieces, p = None, q + 1
            if p >= end:
                break
            if line[p] != ",":
                return broken(QUOTE_IN_QUOTED)
            p += 1
            continue
        # Open at the line's end (a lone backslash there pairs with the line break): on to the next line.
        pieces += [line[p:], "\n"]
        j += 1
        if j == len(lines) and not eof and size <= MAX_RECORD_CHARS:
            return None
        if j == len(lines) or size > MAX_RECORD_CHARS:
            return broken(UNBALANCED)
        line, p = lines[j], 0
        if line is None:
            return broken(NOT_UTF8)
        size += len(line) + 1
    if j == i:
        return Record(i, i + 1, line[:end], fields)
    start = first[1:] if first.startswith(BOM) else first
    return Record(i, j + 1, "\n".join([start, *lines[i + 1:j], line[:end]]), fields)


def _next(lines: Sequence[str | None], i: int, header: Header, eof: bool) -> tuple[int, Record | None] | None:
    """Where the record after the one starting at line ``i`` starts, and that record (None for a blank or
    header line); None when more lines are needed."""
    line = lines[i]
    if line is not None:
        text = normalized(line)
        if text == header.line or not text.strip(" \t"):
            return i + 1, None
    record = read_record(lines, i, header.columns, eof)
    return None if record is None else (record.end, record)


def read_lines(lines: Sequence[str | None], header: str | Header) -> list[Record]:
    """The records of ``lines``, which start where a record starts and end where one ends (a file, or the
    fragments between two segments' sync points in file order)."""
    header = header if isinstance(header, Header) else Header.of(header)
    out, i = [], 0
    while i < len(lines):
        i, record = _next(lines, i, header, eof=True)
        if record is not None:
            out.append(record)
    return out


def stitch(fragments: Iterable[tuple[int, int, int, str | None]], header: str) -> Iterator[tuple[int, Record]]:
    """The records that one file's fragments hold. ``fragments``: (segment start, kind, index, line) of kinds
    HEAD, TAIL and LOOSE, in any order; yields (the segment start of the record's first line, the record),
    the record's ``index`` that line's in its segment.

    A segment's TAIL, the lines of the segments after it that found no sync point, and the next segment's HEAD
    run from a record start to a record start, and are read as one.
    """
    header = Header.of(header)
    segments: dict[int, list[tuple[int, int, str | None]]] = defaultdict(list)
    for start, kind, index, line in fragments:
        segments[start].append((index, kind, line))

    def read(zone: list[tuple[int, int, str | None]]) -> Iterator[tuple[int, Record]]:
        for record in read_lines([line for _, _, line in zone], header):
            start, index, _ = zone[record.index]
            yield start, record._replace(index=index, end=index + record.end - record.index)

    zone: list[tuple[int, int, str | None]] = []  # (segment start, index, line)
    for start in sorted(segments):
        lines = sorted(segments[start])
        if lines[0][1] == LOOSE:
            zone += [(start, index, line) for index, _, line in lines]
            continue
        zone += [(start, index, line) for index, kind, line in lines if kind == HEAD]
        yield from read(zone)
        zone = [(start, index, line) for index, kind, line in lines if kind == TAIL]
    yield from read(zone)


def sync_point(lines: Sequence[str | None], header: Header, eof: bool) -> int | None:
    """The first line of ``lines`` (a segment's first lines) that starts a record whatever came before; None
    when more lines are needed to tell.

    Line 0 either starts a record, and reading from it is right, or lies inside a quoted value of a record
    that ends properly, read with or without backslash escapes; then reading line 0 as inside quotes, the
    same way, finds that record's end, and reading on from there is right. A hypothesis whose first record
    breaks is impossible; the first line where every other one starts a record starts one in all.
    """
    starts = [0]
    for escapes in (True, False):
        inside = _read(lines, 0, eof, in_quotes=True, escapes=escapes)
        if inside is None:
            return None
        if inside.error is None:
            starts.append(inside.end)
    while min(starts) != max(starts):
        k = starts.index(min(starts))
        step = _next(lines, starts[k], header, eof)
        if step is None:
            return None
        starts[k] = step[0]
    return starts[0]


class _Lines(Sequence):
    """An Arrow string array as a sequence of Python strings, converted on access (few lines are)."""

    def __init__(self, array: pa.Array):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.array[i].to_pylist()
        return self.array[i].as_py()


class SegmentReader:
    """The rows of one segment, fed its lines in order (Arrow string arrays; null for a line that is not
    UTF-8): records (``index`` its first line in the segment; ``fields`` set when read here, None for a
    line without quotes, whose fields are its text split at commas), fragments, and a last SEGMENT row whose
    ``index`` is the segment's number of lines. ``first``: the segment starts the file; ``last``: it ends it.

    Lines without a quote are handled as whole arrays; only lines with quotes, and the records they open,
    are read one by one.
    """

    def __init__(self, header: str, first: bool, last: bool):
        self.header, self.synced, self.last = Header.of(header), first, last
        self.pending = pa.array([], pa.string())  # lines not read yet: the start of an open record
        self.base = 0  # the segment index of pending[0]
        self.count = 0

    def feed(self, lines: pa.Array) -> Iterator[pa.RecordBatch]:
        self.count += len(lines)
        window = pa.concat_arrays([self.pending, lines]) if len(self.pending) else lines
        self.pending = lines.slice(0, 0)
        yield from self._read(window, eof=False)

    def close(self) -> Iterator[pa.RecordBatch]:
        window, self.pending = self.pending, self.pending.slice(0, 0)
        if self.last:
            yield from self._read(window, eof=True)
        elif len(window):
            yield _fragment(TAIL if self.synced else LOOSE, window, self.base)
        yield pa.record_batch([pa.array([SEGMENT], pa.int8()), pa.array([self.count], pa.int64()),
                               pa.nulls(1, pa.string()), pa.nulls(1, pa.list_(pa.string())),
                               pa.nulls(1, pa.string())], schema=SCHEMA)

    def _read(self, window: pa.Array, eof: bool) -> Iterator[pa.RecordBatch]:
        if not self.synced:
            start = sync_point(_Lines(window), self.header, eof)
            if start is None:
                self.pending = window
                return
            if start:
                yield _fragment(HEAD, window.slice(0, start), self.base)
            window, self.base, self.synced = window.slice(start), self.base + start, True
        if len(window):
            yield from self._records(window, eof)

    def _records(self, window: pa.Array, eof: bool) -> Iterator[pa.RecordBatch]:
        text = window
        if pc.any(pc.starts_with(text, BOM)).as_py():
            text = pc.replace_substring_regex(text, "^" + BOM, "")
        if pc.any(pc.ends_with(text, "\r")).as_py():
            text = pc.utf8_rtrim(text, "\r")
        skip = pc.or_(pc.equal(text, self.header.line), pc.equal(pc.utf8_trim(text, " \t"), ""))
        skip = pc.fill_null(skip, False).to_numpy(zero_copy_only=False)
        special = pc.fill_null(pc.match_substring(window, '"'), True).to_numpy(zero_copy_only=False) & ~skip
        starts = np.flatnonzero(special)
        lines, read, taken = _Lines(window), [], skip | special
        stop, k = len(window), 0
        while k < len(starts):
            record = read_record(lines, int(starts[k]), self.header.columns, eof)
            if record is None:
                stop = int(starts[k])
                break
            read.append(record)
            taken[record.index:record.end] = True
            k = bisect.bisect_left(starts, record.end, k + 1)
        simple = np.flatnonzero(~taken[:stop])
        if len(simple):
            n = len(simple)
            yield pa.record_batch([pa.array(np.zeros(n, np.int8)), pa.array(simple + self.base),
                                   text.take(simple), pa.nulls(n, pa.list_(pa.string())), pa.nulls(n, pa.string())],
                                  schema=SCHEMA)
        if read:
            yield pa.record_batch([pa.array([RECORD] * len(read), pa.int8()),
                                   pa.array([r.index + self.base for r in read], pa.int64()),
                                   pa.array([r.line for r in read], pa.string()),
                                   pa.array([r.fields for r in read], pa.list_(pa.string())),
                                   pa.array([r.error for r in read], pa.string())], schema=SCHEMA)
        self.pending, self.base = window.slice(stop), self.base + stop


def _fragment(kind: int, lines: pa.Array, base: int) -> pa.RecordBatch:
    n = len(lines)
    return pa.record_batch([pa.array([kind] * n, pa.int8()), pa.array(np.arange(base, base + n)), lines,
                            pa.nulls(n, pa.list_(pa.string())), pa.nulls(n, pa.string())], schema=SCHEMA)
