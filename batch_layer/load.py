"""Bringing history in: files of records -> a source's lake table, exactly once per file.

Each record goes through the source's validator (the one lake ingest and the speed layer
use); good ones are appended in bounded Delta commits, rejects are written, with their
line and reason, to ``<file>.rejects.jsonl`` beside the file. A record that cannot even be
read (not UTF-8, over ``LFP_LOAD_MAX_RECORD_BYTES``, a CSV record the parser refuses) is a
reject like any other: a load always reaches the end of its file.

Exactly once: every commit also records, as Delta app transactions, how far the load has
got: the byte offset reached under the file's path, and the number of records handled
(appended or rejected) under the SHA-256 of the bytes up to that offset. A re-run resumes
after the records of

1. the whole file's hash, if recorded: the same content was loaded before (under any
   path), or is exactly a prefix an earlier load committed; else
2. the prefix its path's earlier load committed, if the file still starts with exactly
   those bytes (a load cut short, or a file that grew since: only the rest is loaded).

A file whose committed prefix changed (an edit inside the part already loaded) is refused:
the lake cannot tell which of its records are in already. ``fresh`` says the file at that
path is new content, not an edit, and loads it whole (rule 1 still applies).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow.parquet as pq

from batch_layer.lake import (
    append_loaded,
    load_app_id,
    load_path_app_id,
    schema_problems,
    transaction_versions,
)
from feature_core.settings import Settings
from feature_core.sources import EventSource, InvalidRecord, Record

FORMATS = ("jsonl", "csv", "parquet")
#: How much of a record that cannot be read is kept in its reject (decoded leniently).
REJECT_HEAD_BYTES = 4096


class ChangedFile(ValueError):
    """The part of a file an earlier load committed is no longer what it loaded."""


@dataclass
class LoadResult:
    path: Path
    records: int  # in the file
    appended: int  # by this run
    rejected: int  # by this run
    skipped: int  # handled by earlier runs of the same content
    commits: int
    rejects_path: Path | None
    #: The first few of this run's rejects, as "line N: reason".
    first_rejects: list[str] = field(default_factory=list)


def file_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in ("csv", "parquet"):
        return suffix
    raise ValueError(f"{path}: unknown format {suffix!r}; use .jsonl, .csv or .parquet")


def content_hash(path: Path, size: int | None = None) -> str:
    """SHA-256 of the file's first ``size`` bytes (all of it by default)."""
    digest = hashlib.sha256()
    left = size
    with path.open("rb") as file:
        while left is None or left > 0:
            block = file.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


def records_done(
    whole: int | None,
    path_offset: int | None,
    size: int,
    prefix_done: Callable[[int], int | None],
    fresh: bool = False,
) -> int:
    """How many of a file's records earlier loads handled (the rule in the module's doc).

    ``whole``: the records recorded under the whole file's hash; ``path_offset``: the byte
    offset recorded under its path; ``prefix_done(n)``: the records recorded under the
    hash of its first ``n`` bytes. Raises :class:`ChangedFile` for an edited prefix."""
    if whole is not None:
        return whole
    if fresh or not path_offset:
        return 0
    done = prefix_done(path_offset) if path_offset <= size else None
    if done is None:
        raise ChangedFile(
            f"its first {path_offset:,} bytes were loaded before and have changed since "
            "(edited, or another file at this path): loading it again would append their "
            "records twice. Load only the new or corrected records as a file of their own, "
            "or pass --fresh if this is new content that was never loaded"
        )
    return done


# --- readers: (line or row number, the record as decoded, or why it could not be) ---------

Item = tuple[int, Any, str | None]


class _Bytes:
    """A binary file read line by line that counts and hashes exactly the bytes handed out,
    so a commit can name the prefix its records came from."""

    #: How much of an oversized line is read (and dropped) at a time.
    part_bytes = 1 << 20

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self.file = file
        self.limit = limit
        self.offset = 0
        self.digest = hashlib.sha256()

    def position(self) -> tuple[int, str]:
        return self.offset, self.digest.copy().hexdigest()

    def _take(self, data: bytes) -> bytes:
        self.offset += len(data)
        self.digest.update(data)
        return data

    def line(
        self, scan: Callable[[bytes, int], int] | None = None, state: int = 0
    ) -> tuple[bytes, int, int]:
        """The next line (with its line break), its size, and ``scan`` folded over all of
        its bytes from ``state``; a line over the limit is read through to its end, but
        only its first ``limit`` bytes are returned."""
        head = self._take(self.file.readline(self.limit + 1))
        size = len(head)
        if scan:
            state = scan(head, state)
        if size > self.limit and not head.endswith(b"\n"):
            while part := self._take(self.file.readline(self.part_bytes)):
                size += len(part)
                if scan:
                    state = scan(part, state)
                if part.endswith(b"\n"):
                    break
        return head[: self.limit], size, state


class _Whole:
    """A Parquet file's position: its records are named by the whole file's hash."""

    def __init__(self, size: int, digest: str) -> None:
        self.size, self.digest = size, digest

    def position(self) -> tuple[int, str]:
        return self.size, self.digest


def _shown(raw: bytes) -> str:
    return raw[:REJECT_HEAD_BYTES].decode("utf-8", "replace")


def _too_large(size: int, limit: int) -> str:
    return f"{size:,} bytes, over the limit of {limit:,} (LFP_LOAD_MAX_RECORD_BYTES)"


def _not_utf8(raw: bytes, error: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 (byte {error.start + 1} of the record: {raw[error.start]:#04x})"


def _jsonl(stream: _Bytes, source: EventSource) -> Iterator[Item]:
    number = 0
    while True:
        line, size, _ = stream.line()
        if not size:
            return
        number += 1
        if size > stream.limit:
            yield number, _shown(line), _too_large(size, stream.limit)
            continue
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)  # checks UTF-8 too
        except orjson.JSONDecodeError:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, _shown(line), _not_utf8(line, error)
            else:
                yield number, text.rstrip("\r\n"), "not valid JSON"
            continue
        yield number, record, None


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def _from_text(text: str, kind: str) -> Any:
    """A CSV cell as its field type would arrive in JSON (empty: null)."""
    if text == "":
        return None
    if kind == "integer":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError(f"{text!r} is not true or false")
    if kind == "timestamp":
        return int(text) if text.strip().isdigit() else text
    return text


#: Where a CSV parser stands: at a field's start, in an unquoted field, in a quoted
#: field, or just after a quote inside a quoted field (closing it, or escaping a quote).
START, FIELD, QUOTED, QUOTE = range(4)


_ENDS_FIELD = (ord(","), ord("\r"), ord("\n"))
_QUOTE = ord('"')


def csv_state(part: bytes, state: int = START) -> int:
    """The parser's state after ``part``, by the csv module's (Excel's) rules: a quote
    opens a quoted field only at the field's start, ``""`` inside one is a quote, a quote
    elsewhere is an ordinary character, and a line break outside quotes ends the record.
    A line ending in ``QUOTED`` goes on: its line break belongs to the field. (It steps
    from quote to quote, so a line costs its quotes, not its fields.)"""
    i, n = 0, len(part)
    while i < n:
        if state == QUOTED:
            j = part.find(b'"', i)
            if j < 0:
                return QUOTED
            state, i = QUOTE, j + 1
        elif state == QUOTE:
            c = part[i]
            state = QUOTED if c == _QUOTE else START if c in _ENDS_FIELD else FIELD
            i += 1
        else:  # outside quotes: only a quote at a field's start matters
            j = part.find(b'"', i)
            if j < 0:
                return START if part[-1] in _ENDS_FIELD else FIELD
            opens = state == START if j == i else part[j - 1] in _ENDS_FIELD
            state, i = (QUOTED if opens else FIELD), j + 1
    return state


def csv_records(stream: _Bytes) -> Iterator[tuple[int, bytes, int]]:
    """The file's CSV records as (first line number, bytes (at most the limit), size),
    split at line breaks outside quoted fields. A record that never closes its quote runs
    to the end of the file (and is one reject, as the csv module would read it)."""
    number = 0
    while True:
        line, size, state = stream.line(csv_state, START)
        if not size:
            return
        number += 1
        first, parts, kept, total = number, [line], len(line), size
        while state == QUOTED:
            line, size, state = stream.line(csv_state, QUOTED)
            if not size:
                break
            number += 1
            total += size
            if kept < stream.limit:
                parts.append(line[: stream.limit - kept])
                kept += len(parts[-1])
        yield first, b"".join(parts), total


def _csv_rows(text: str) -> list[list[str]]:
    """The rows of one record: one, or more when a line holds bare-CR line ends."""
    if "\r" not in (text[:-2] if text.endswith("\r\n") else text):
        try:  # the usual record: a faster reader, line breaks only inside quotes or last
            return list(csv.reader((text,)))
        except csv.Error:
            pass  # the full reader reports it
    return list(csv.reader(io.StringIO(text, newline="")))


def _csv(stream: _Bytes, source: EventSource) -> Iterator[Item]:
    kinds = {f.name: f.type for f in source.fields}
    # A field can be as long as a record; the csv module's own limit would fail the load.
    if csv.field_size_limit() < stream.limit:
        csv.field_size_limit(stream.limit)
    records = csv_records(stream)
    header: list[str] | None = None
    for number, raw, size in records:
        rows: list[list[str]] = []
        shown = ""
        if size > stream.limit:
            problem, shown = _too_large(size, stream.limit), _shown(raw)
        else:
            try:
                shown = raw.decode("utf-8-sig" if header is None else "utf-8")
                rows = _csv_rows(shown)
                problem = None
            except UnicodeDecodeError as error:
                problem, shown = _not_utf8(raw, error), _shown(raw)
            except csv.Error as error:
                problem = f"not valid CSV: {error}"
        if header is None:
            if problem or not rows or not rows[0]:
                raise ValueError(f"line {number}: no readable CSV header ({problem or 'empty'})")
            header, rows = rows[0], rows[1:]
        if problem:
            yield number, shown.rstrip("\r\n"), problem
            continue
        for row in rows:
            if not row:
                continue  # a blank line, as csv.DictReader skips it
            data: dict[str, Any] = {}
            problems = []
            for name, value in zip(header, row, strict=False):
                if name in kinds:
                    try:
                        data[name] = _from_text(value, kinds[name])
                    except ValueError:
                        problems.append(f"{name}: {value!r} is not a {kinds[name]}")
            yield number, data, "; ".join(problems) or None


def _plain(value: Any) -> Any:
    """Parquet values as JSON would carry them: timestamps as epoch ms, decimals as
    numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    return value


def _parquet(path: Path, source: EventSource) -> Iterator[Item]:
    file = pq.ParquetFile(path)
    wanted = [name for name in source.columns if name in file.schema_arrow.names]
    number = 0
    for batch in file.iter_batches(columns=wanted, batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield number, {k: _plain(v) for k, v in row.items()}, None


def count_records(path: Path, block_bytes: int = 1 << 20) -> int:
    """Records in a file, for a progress bar: Parquet's row count, or its non-blank lines
    (less the header of a CSV file; a CSV cell may hold a line break, so it is a bound).
    Read in blocks: a file with no line break costs one block of memory, not the file."""
    form = file_format(path)
    if form == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    pending = False  # the unfinished line so far holds a non-blank byte
    with path.open("rb") as file:
        while block := file.read(block_bytes):
            *ended, rest = block.split(b"\n")
            for piece in ended:
                lines += pending or bool(piece.strip())
                pending = False
            pending = pending or bool(rest.strip())
    lines += pending
    return max(lines - 1, 0) if form == "csv" else lines


def _reject_line(reject: dict[str, Any]) -> bytes:
    """One rejects-file line. default=str: a value JSON has no form for (bytes, an odd
    Parquet type) is kept as its text; an integer past 64 bits (orjson has none) goes
    through the standard library, rather than failing the load on the record it rejects."""
    try:
        return orjson.dumps(reject, default=str) + b"\n"
    except TypeError:
        return json.dumps(reject, default=str).encode() + b"\n"


def load_file(
    settings: Settings,
    source: EventSource,
    path: Path,
    chunk: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
    now_ms: int | None = None,
    fresh: bool = False,
) -> LoadResult:
    """Validate every record of ``path`` and append the good ones to the source's table.

    ``on_progress(n)`` is called with how many more records were handled. Events dated
    more than 5 minutes after ``now_ms`` (default: now) are rejected, as ingest does.
    What a re-run skips, and when a file is refused (:class:`ChangedFile`), is the
    module's doc. Two loads of the same file at the same time are not guarded against.
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    uri = settings.table_uri(source.table_name)
    problems = schema_problems(uri, source)
    if problems:
        raise RuntimeError("; ".join(problems))
    form = file_format(path)
    table = source.table_name
    size = path.stat().st_size
    whole = content_hash(path)
    path_id = load_path_app_id(table, str(path.resolve()))
    recorded = transaction_versions(uri, [load_app_id(table, whole), path_id])

    def prefix_done(offset: int) -> int | None:
        app_id = load_app_id(table, content_hash(path, offset))
        return transaction_versions(uri, [app_id])[app_id]

    done = records_done(
        recorded[load_app_id(table, whole)], recorded[path_id], size, prefix_done, fresh
    )
    rejects_path = path.with_name(path.name + ".rejects.jsonl")
    result = LoadResult(path, 0, 0, 0, done, 0, None)
    good: list[Record] = []
    rejects: list[bytes] = []
    handled = 0
    committed = -1  # the offset of this run's last commit

    with path.open("rb") as file:
        tracked: _Bytes | _Whole
        if form == "parquet":
            tracked = _Whole(size, whole)
            items = _parquet(path, source)
        else:
            tracked = _Bytes(file, settings.load_max_record_bytes)
            items = (_csv if form == "csv" else _jsonl)(tracked, source)

        def commit() -> None:
            nonlocal committed
            if rejects:
                # Written and flushed before the commit that moves past them: none is lost.
                with rejects_path.open("ab") as out:
                    out.writelines(rejects)
                result.rejects_path = rejects_path
            offset, digest = tracked.position()
            progress = {load_app_id(table, digest): handled, path_id: offset}
            append_loaded(uri, source, good, progress)
            committed = offset
            result.appended += len(good)
            result.rejected += len(rejects)
            result.commits += 1
            if on_progress:
                on_progress(len(good) + len(rejects))
            good.clear()
            rejects.clear()

        if done == 0 and rejects_path.exists():
            rejects_path.unlink()  # from a load of other content, or one that never committed
        for number, data, problem in items:
            handled += 1
            if handled <= done:
                continue
            try:
                if problem:
                    raise InvalidRecord(problem)
                good.append(source.check(data, now_ms))
            except InvalidRecord as error:
                reject = {"line": number, "reason": str(error), "record": data}
                if len(result.first_rejects) < 3:
                    result.first_rejects.append(f"line {number}: {error}")
                rejects.append(_reject_line(reject))
            if len(good) + len(rejects) >= chunk:
                commit()
        result.records = handled
        # The last commit covers the file to its end (blank lines after the last record
        # included), so it names the whole content: a copy elsewhere is recognized.
        if good or rejects or (handled > done and committed != tracked.position()[0]):
            commit()
    if on_progress and done:
        on_progress(min(done, handled))
    if rejects_path.exists():  # this run's rejects, or an earlier run's of this load
        result.rejects_path = rejects_path
    return result
