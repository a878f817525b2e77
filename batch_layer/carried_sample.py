"""The feature statistics' sample carried from one incremental run to the next.

A run's sample of a group is every entity whose hash is under a bound, and the values its
view serves at the cutoff (:mod:`batch_layer.feature_stats`). An incremental run writes
only the documents whose served values can change (new events, or a window edge that
moved past the entity's tiles); every other document serves what it served before. So
the next run's sample of a group it advances is the previous one's, without the entities
it wrote (tombstones included), plus the written ones under the bound, which its writers
offer as they write. A group whose values move with the query time (decay, sessions)
keeps the entities and has their documents merged again at the new cutoff.

The candidates of each run (the entities under the bound, their values and statuses) are
kept beside the tile table, one Parquet file per view version under ``_lfp_samples/``
(Delta and its vacuum ignore ``_`` directories). A run reads the serving view's file, and
only for groups it advances incrementally: a rebuilt or reassembled group, a changed
sample size, or a candidate set shrunk below the sample or grown past 1.5 times what a
fresh bound draws takes a fresh one (Spark picks the candidates over the group's tiles).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow.fs import FileSelector, FileSystem, FileType
from pydantic import BaseModel, ConfigDict

from batch_layer.feature_stats import Sampled, candidates_drawn
from batch_layer.lake import data_file_uri

log = logging.getLogger(__name__)

SAMPLES_DIR = "_lfp_samples"
#: Files of earlier views kept (a run reads the serving view's; the rest are history).
FILES_KEPT = 2
#: A carried candidate set is used while it holds the sample and at most this many
#: times the candidates a fresh bound draws (beyond, the bound is drawn again from the
#: group's entity count).
CARRY_HIGH = 1.5
_METADATA_KEY = b"lfp.sample"
_SCHEMA = pa.schema(
    [
        pa.field("group", pa.string(), nullable=False),
        pa.field("priority", pa.uint64(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("values", pa.string(), nullable=False),
        pa.field("statuses", pa.string(), nullable=False),
    ]
)
_JSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class CarriedGroup(BaseModel):
    """What a group's candidates were drawn with: a run carries them only under the same
    bound, sample size and definitions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Hash bound as 16 hex digits (None: every entity was a candidate).
    bound: str | None
    #: Every entity under this hash is among the candidates (a task that kept at most
    #: the sample may have dropped larger ones); None: the bound.
    complete_below: str | None
    keep: int
    view_fingerprint: str


class CarriedHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    view_version: int
    groups: dict[str, CarriedGroup]


@dataclass(frozen=True)
class Carried:
    """One group's candidates of the previous run, ready to be carried."""

    bound: int | None
    complete_below: int | None
    entries: list[Sampled]

    def usable(self, keep: int) -> bool:
        """Whether the candidates are a sample of the right size: with no bound every
        entity is one (carried while they stay few), else those complete under the bound
        must be close to the sample."""
        most = CARRY_HIGH * candidates_drawn(keep)
        if self.bound is None:
            return len(self.entries) <= most
        limit = self.bound if self.complete_below is None else self.complete_below
        complete = sum(1 for entry in self.entries if entry[0] < limit)
        return keep <= complete <= most


def hex_bound(bound: int | None) -> str | None:
    return None if bound is None else f"{bound:016x}"


def _int_bound(bound: str | None) -> int | None:
    return None if bound is None else int(bound, 16)


def samples_uri(tiles_uri: str, view_version: int) -> str:
    return data_file_uri(tiles_uri, f"{SAMPLES_DIR}/v{view_version}.parquet")


def save_carried(
    tiles_uri: str,
    view_version: int,
    groups: Mapping[str, tuple[CarriedGroup, Iterable[Sampled]]],
) -> int:
    """Write view ``view_version``'s candidates of each group (its header, its entries)
    and delete the files of views older than the last :data:`FILES_KEPT`. Returns the
    rows written."""
    columns: dict[str, list[str]] = {name: [] for name in _SCHEMA.names}
    for name, (_, entries) in groups.items():
        for priority, entity, values, statuses in entries:
            columns["group"].append(name)
            columns["priority"].append(priority)
            columns["entity"].append(entity)
            columns["values"].append(orjson.dumps(values, option=_JSON).decode())
            columns["statuses"].append(orjson.dumps(statuses).decode())
    header = CarriedHeader(
        view_version=view_version, groups={name: g for name, (g, _) in groups.items()}
    )
    schema = _SCHEMA.with_metadata({_METADATA_KEY: header.model_dump_json().encode()})
    table = pa.table(columns, schema=schema)
    filesystem, path = FileSystem.from_uri(samples_uri(tiles_uri, view_version))
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=filesystem, compression="zstd")
    _prune(filesystem, path.rsplit("/", 1)[0], view_version)
    return table.num_rows


def _prune(filesystem: FileSystem, directory: str, newest: int) -> None:
    for info in filesystem.get_file_info(FileSelector(directory, allow_not_found=True)):
        name = info.base_name
        if info.type != FileType.File or not (name.startswith("v") and name.endswith(".parquet")):
            continue
        try:
            version = int(name[1 : -len(".parquet")])
        except ValueError:
            continue
        if version <= newest - FILES_KEPT:
            filesystem.delete_file(info.path)


def _json_column(column: pa.ChunkedArray) -> list[Any]:
    """Each JSON text of a string column decoded: joined into one JSON array in Arrow
    and parsed by one ``orjson.loads`` (a call per value costs more than its parse)."""
    texts = column.combine_chunks().cast(pa.large_string())
    if len(texts) == 0 or texts.null_count:
        return [None if t is None else orjson.loads(t) for t in texts.to_pylist()]
    offsets = pa.array([0, len(texts)], pa.int64())
    whole = pc.binary_join(
        pa.LargeListArray.from_arrays(offsets, texts), pa.scalar(",", pa.large_string())
    )
    return orjson.loads("[" + whole[0].as_py() + "]")


def load_carried(
    tiles_uri: str, view_version: int, fingerprints: Mapping[str, str], keep: int
) -> dict[str, Carried]:
    """The candidates view ``view_version`` kept of the groups in ``fingerprints`` (name
    -> view fingerprint) that were drawn for a sample of ``keep`` under those
    definitions and are still a sample of that size (:meth:`Carried.usable`); none when
    the view kept no file."""
    filesystem, path = FileSystem.from_uri(samples_uri(tiles_uri, view_version))
    if filesystem.get_file_info(path).type != FileType.File:
        return {}
    table = pq.read_table(path, filesystem=filesystem)
    metadata = table.schema.metadata or {}
    header = CarriedHeader.model_validate_json(metadata[_METADATA_KEY])
    if header.view_version != view_version:
        raise ValueError(f"{path} holds view v{header.view_version}, not v{view_version}")
    wanted = [
        name
        for name, group in header.groups.items()
        if fingerprints.get(name) == group.view_fingerprint and group.keep == keep
    ]
    entries: dict[str, list[Sampled]] = {name: [] for name in wanted}
    table = table.filter(pc.is_in(table.column("group"), pa.array(wanted, pa.string())))
    rows = zip(
        table.column("group").to_pylist(),
        table.column("priority").to_pylist(),
        table.column("entity").to_pylist(),
        _json_column(table.column("values")),
        _json_column(table.column("statuses")),
        strict=True,
    )
    for name, priority, entity, values, statuses in rows:
        entries[name].append((priority, entity, values, statuses))
    found = {}
    for name in wanted:
        group = header.groups[name]
        carried = Carried(_int_bound(group.bound), _int_bound(group.complete_below), entries[name])
        if carried.usable(keep):
            found[name] = carried
    return found
