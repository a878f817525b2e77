"""Bringing history in: files of records -> a source's lake table, exactly once per file.

Each record goes through the source's validator (the one lake ingest and the speed layer
use); good ones are appended in bounded Delta commits, rejects are written, with their
line and reason, to ``<file>.rejects.jsonl`` beside the file.

Exactly once: a load is named by the SHA-256 of the file's content, and every commit also
records, as a Delta app transaction under that name, how many of the file's records are
handled so far (appended or rejected). A re-run of the same content (any path) reads that
count and skips those records, so nothing is appended twice, and a load cut short by a
crash resumes right after its last commit.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from batch_layer.lake import append_loaded, load_app_id, loaded_records, schema_problems
from feature_core.settings import Settings
from feature_core.sources import EventSource, InvalidRecord, Record

FORMATS = ("jsonl", "csv", "parquet")


@dataclass
class LoadResult:
    path: Path
    records: int  # in the file
    appended: int  # by this run
    rejected: int  # by this run
    skipped: int  # handled by earlier runs of the same content
    commits: int
    rejects_path: Path | None


def file_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in ("csv", "parquet"):
        return suffix
    raise ValueError(f"{path}: unknown format {suffix!r}; use .jsonl, .csv or .parquet")


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- readers: (line or row number, the record as decoded, or why it could not be) ---------

Item = tuple[int, Any, str | None]


def _jsonl(path: Path, source: EventSource) -> Iterator[Item]:
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line), None
            except orjson.JSONDecodeError:
                yield number, line.decode("utf-8", "replace").rstrip("\n"), "not valid JSON"


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


def _csv(path: Path, source: EventSource) -> Iterator[Item]:
    kinds = {f.name: f.type for f in source.fields}
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            number = reader.line_num
            data: dict[str, Any] = {}
            problems = []
            for name, text in row.items():
                if name in kinds and text is not None:
                    try:
                        data[name] = _from_text(text, kinds[name])
                    except ValueError:
                        problems.append(f"{name}: {text!r} is not a {kinds[name]}")
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


_READERS: dict[str, Callable[[Path, EventSource], Iterator[Item]]] = {
    "jsonl": _jsonl,
    "csv": _csv,
    "parquet": _parquet,
}


def count_records(path: Path) -> int:
    """Records in a file, for a progress bar: Parquet's row count, or its non-blank lines
    (less the header of a CSV file; a CSV cell may hold a line break, so it is a bound)."""
    form = file_format(path)
    if form == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as file:
        lines = sum(1 for line in file if line.strip())
    return max(lines - 1, 0) if form == "csv" else lines


def load_file(
    settings: Settings,
    source: EventSource,
    path: Path,
    chunk: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
    now_ms: int | None = None,
) -> LoadResult:
    """Validate every record of ``path`` and append the good ones to the source's table.

    ``on_progress(n)`` is called with how many more records were handled. Events dated
    more than 5 minutes after ``now_ms`` (default: now) are rejected, as ingest does.

    The same content loaded twice is appended once; a file that grew since (lines
    appended) is other content and loads whole again: load the new lines as a file of
    their own. Two loads of the same file at the same time are not guarded against.
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    uri = settings.table_uri(source.table_name)
    problems = schema_problems(uri, source)
    if problems:
        raise RuntimeError("; ".join(problems))
    read = _READERS[file_format(path)]
    app_id = load_app_id(source.table_name, content_hash(path))
    done = loaded_records(uri, app_id)
    rejects_path = path.with_name(path.name + ".rejects.jsonl")
    result = LoadResult(path, 0, 0, 0, done, 0, None)
    good: list[Record] = []
    rejects: list[bytes] = []
    handled = 0

    def commit() -> None:
        if rejects:
            # Written and flushed before the commit that moves past them: none is lost.
            with rejects_path.open("ab") as out:
                out.writelines(rejects)
            result.rejects_path = rejects_path
        append_loaded(uri, source, good, app_id, handled)
        result.appended += len(good)
        result.rejected += len(rejects)
        result.commits += 1
        if on_progress:
            on_progress(len(good) + len(rejects))
        good.clear()
        rejects.clear()

    if done == 0 and rejects_path.exists():
        rejects_path.unlink()  # from a load of other content, or one that never committed
    for number, data, problem in read(path, source):
        handled += 1
        if handled <= done:
            continue
        try:
            if problem:
                raise InvalidRecord(problem)
            good.append(source.check(data, now_ms))
        except InvalidRecord as error:
            reject = {"line": number, "reason": str(error), "record": data}
            # default=str: a value JSON has no form for (bytes, an odd Parquet type) is
            # kept as its text rather than failing the load.
            rejects.append(orjson.dumps(reject, default=str) + b"\n")
        if len(good) + len(rejects) >= chunk:
            commit()
    result.records = handled
    if good or rejects:
        commit()
    if on_progress and done:
        on_progress(min(done, handled))
    return result
