"""The online store on one Redis server (the default): batch views, the pointer, tiles
and shared state, written and read with redis-py."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis

from feature_core import corrections
from feature_core.credentials import redis_tls_options
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from online_store.base import OnlineStore, TileTarget, ViewChanges
from online_store.keys import KeySpace, doc_version, is_tombstone, stamped
from runtime import health

#: Begin writing version ARGV[1] (KEYS: the writing marker, the pointer): refused (-1)
#: when a newer run began or serves; else the version serving (0: none of layout 2,
#: whose readers read no ``bc`` document).
BEGIN_VIEWS = """
local n = tonumber(ARGV[1])
local marker = redis.call('GET', KEYS[1])
if marker and tonumber(marker) > n then return -1 end
local current = redis.call('GET', KEYS[2])
local serving = 0
if current then
  local pointer = cjson.decode(current)
  if tonumber(pointer['version']) >= n then return -1 end
  if pointer['layout'] == 2 then serving = tonumber(pointer['version']) end
end
redis.call('SET', KEYS[1], ARGV[1])
return serving
"""

#: Serve a version only if it is newer than the serving one and no newer run began
#: writing (runs share the documents' keys): a slow older run never replaces a newer
#: view (the marker stays: a run still writing after an older one began is refused by
#: it). KEYS: the pointer, the writing marker. Returns the version replaced (0: none
#: served), -1: not switched.
SWITCH_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
local serving = 0
if current then serving = tonumber(cjson.decode(current)['version']) end
local n = tonumber(ARGV[2])
if serving >= n then return -1 end
local marker = redis.call('GET', KEYS[2])
if marker and tonumber(marker) > n then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
return serving
"""

# What the document scripts share: a stored document's version, whether it is live (a
# tombstone has no comma), and one (group, entity)'s write.
_DOC_FUNCTIONS = """
local function version_of(raw)
  return tonumber(string.match(raw, '^{"@v":(%d+)'))
end
local function live(raw)
  return raw and string.find(raw, ',', 1, true) ~= nil
end
-- Write version n's document (doc; '' tombstones an older live one) while version s
-- serves: the document s shows moves to bp first, unless bc is a leftover of a run that
-- never switched (newer than s: bp holds it already). Returns the change in live
-- entities as s sees them, and whether bp may now be set (the caller indexes it).
local function write_doc(bc, bp, doc, n, s)
  local cur = redis.call('GET', bc)
  if not cur then
    if doc == '' then return 0, false end
    redis.call('UNLINK', bp)
    redis.call('SET', bc, doc)
    return live(doc) and 1 or 0, false
  end
  local v = version_of(cur)
  if v > n then return 0, false end
  if doc == '' then
    if v >= n or not live(cur) then return 0, false end
    doc = '{"@v":' .. n .. '}'
  end
  local visible = cur
  if v <= s then redis.call('SET', bp, cur) else visible = redis.call('GET', bp) end
  redis.call('SET', bc, doc)
  return (live(doc) and 1 or 0) - (live(visible) and 1 or 0), true
end
-- Unlink bp (and a tombstone bc) when no reader at version f or later needs them.
local function clean_doc(bc, bp, f)
  local cur = redis.call('GET', bc)
  if cur and version_of(cur) > f then return 0 end
  local removed = redis.call('UNLINK', bp)
  if cur and not live(cur) then removed = removed + redis.call('UNLINK', bc) end
  return removed
end
"""

#: One chunk of documents on one server. KEYS: the writing marker, the previous-copies
#: index, then (bc, bp) per entity. ARGV: version, serving version, length of the bc
#: root, then one document per entity. Nothing is written once a newer run began
#: (nil reply); else the sum of created and of deleted entities.
WRITE_VIEWS = (
    _DOC_FUNCTIONS
    + """
local n, s, root = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local marker = redis.call('GET', KEYS[1])
if marker and tonumber(marker) > n then return false end
local created, deleted = 0, 0
for i = 3, #KEYS, 2 do
  local code, kept = write_doc(KEYS[i], KEYS[i + 1], ARGV[(i - 3) / 2 + 4], n, s)
  if code > 0 then created = created + 1 elseif code < 0 then deleted = deleted + 1 end
  if kept then redis.call('ZADD', KEYS[2], 'GT', n, string.sub(KEYS[i], root + 1)) end
end
return {created, deleted}
"""
)

#: One entity's document (KEYS: bc, bp; ARGV: version, serving version, document): the
#: Redis Cluster form, where a script reaches one slot. Returns {change, kept}.
WRITE_VIEW = (
    _DOC_FUNCTIONS
    + """
local code, kept = write_doc(KEYS[1], KEYS[2], ARGV[3], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {code, kept and 1 or 0}
"""
)

#: Clean (bc, bp) pairs (KEYS) for readers at version ARGV[1] or later: keys unlinked.
CLEAN_PREVIOUS = (
    _DOC_FUNCTIONS
    + """
local removed, f = 0, tonumber(ARGV[1])
for i = 1, #KEYS, 2 do removed = removed + clean_doc(KEYS[i], KEYS[i + 1], f) end
return removed
"""
)

#: Record runs and keep the newest ARGV[1] of them (the hash and its index, one slot).
SAVE_RUNS = """
local runs, index, keep = KEYS[1], KEYS[2], tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  redis.call('HSET', runs, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', index, ARGV[i + 2], ARGV[i])
end
local surplus = redis.call('ZRANGE', index, 0, -keep - 1)
if #surplus > 0 then
  redis.call('ZREM', index, unpack(surplus))
  redis.call('HDEL', runs, unpack(surplus))
end
return #surplus
"""

#: One commit's correction tiles (KEYS[1]: the index of the keys holding corrections;
#: the rest: the entities' tile hashes; ARGV: TTL, version, then per key its field
#: count and fields): each hash's fields set and its TTL renewed, and the key indexed by
#: the newest version it holds (retirement finds the keys there). Three commands per key
#: run here instead of being sent, parsed and answered one by one: half the client's
#: time per commit.
WRITE_CORRECTIONS = """
local index, ttl, version, i = KEYS[1], ARGV[1], ARGV[2], 3
for k = 2, #KEYS do
  local n = tonumber(ARGV[i])
  redis.call('HSET', KEYS[k], unpack(ARGV, i + 1, i + 2 * n))
  redis.call('EXPIRE', KEYS[k], ttl)
  redis.call('ZADD', index, 'GT', version, KEYS[k])
  i = i + 2 * n + 1
end
return #KEYS - 1
"""

#: Keys written or deleted per pipeline round trip.
CHUNK = 1000
#: Entities per call of a write script (each call blocks the server while it runs).
SCRIPT_CHUNK = 500


class RedisStore(OnlineStore):
    """Batch views as one document per (group, entity) stamped with its version, and its
    previous document while readers may need it; speed tiles as one hash per (group,
    entity); shared state under the ``{meta}`` tag."""

    #: Correction tiles written by one script call per chunk of entities
    #: (WRITE_CORRECTIONS), which may touch keys of any slot: one server only.
    scripted_corrections = True
    #: Batch documents written and cleaned by one script call per chunk of entities,
    #: which may touch keys of any slot: one server only.
    multi_slot_scripts = True

    def __init__(self, client: Any, key_prefix: str, url: str) -> None:
        self.client = client
        self.keys = KeySpace(key_prefix)
        self.url = url
        self._write_corrections_script = client.register_script(WRITE_CORRECTIONS)
        self._write_views_script = client.register_script(WRITE_VIEWS)
        self._clean_script = client.register_script(CLEAN_PREVIOUS)
        # Whether the last sweep met layout 1 keys (clean_views then unlinks the old ones).
        self._legacy_seen = True

    @classmethod
    def from_settings(cls, settings: Settings, timeout_s: float | None = None) -> RedisStore:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            **redis_tls_options(settings.redis_url),
        )
        return cls(client, settings.key_prefix, settings.redis_url)

    # --- batch views -------------------------------------------------------------
    def next_version(self) -> int:
        return int(self.client.incr(self.keys.batch_seq))

    def begin_views(self, version: int) -> int | None:
        serving = int(
            self.client.eval(
                BEGIN_VIEWS, 2, self.keys.batch_writing, self.keys.batch_pointer, version
            )
        )
        return None if serving < 0 else serving

    def write_views(
        self,
        version: int,
        serving: int,
        group: str,
        views: Iterable[tuple[str, bytes]],
        written: Callable[[int], None] | None = None,
    ) -> ViewChanges | None:
        created = deleted = 0
        chunk: list[tuple[str, bytes]] = []
        for entity, doc in views:
            chunk.append((self.keys.batch_suffix(group, entity), stamped(version, doc)))
            if len(chunk) >= SCRIPT_CHUNK:
                changes = self._write_docs(version, serving, chunk)
                if changes is None:
                    return None
                created, deleted = created + changes.created, deleted + changes.deleted
                if written is not None:
                    written(len(chunk))
                chunk = []
        if chunk:
            changes = self._write_docs(version, serving, chunk)
            if changes is None:
                return None
            created, deleted = created + changes.created, deleted + changes.deleted
            if written is not None:
                written(len(chunk))
        return ViewChanges(created, deleted)

    def _write_docs(
        self, version: int, serving: int, docs: Sequence[tuple[str, bytes]]
    ) -> ViewChanges | None:
        """One chunk of (key suffix, stored document; b"" tombstones an older one)."""
        if not self.multi_slot_scripts:
            return self._write_docs_per_slot(version, serving, docs)
        keys = [self.keys.batch_writing, self.keys.batch_previous_index]
        args: list[Any] = [version, serving, len(self.keys.batch_doc_root)]
        for suffix, doc in docs:
            keys += (self.keys.batch_doc_root + suffix, self.keys.batch_previous_root + suffix)
            args.append(doc)
        reply = self._write_views_script(keys=keys, args=args)
        return None if reply is None else ViewChanges(int(reply[0]), int(reply[1]))

    def _write_docs_per_slot(
        self, version: int, serving: int, docs: Sequence[tuple[str, bytes]]
    ) -> ViewChanges | None:
        """:meth:`_write_docs` where a script reaches one slot: the marker is checked per
        chunk, each entity's keys are written by one script call, the index after."""
        marker = self.client.get(self.keys.batch_writing)
        if marker is not None and int(marker) > version:
            return None
        with self.client.pipeline(transaction=False) as pipe:
            for suffix, doc in docs:
                bc, bp = self.keys.batch_doc_root + suffix, self.keys.batch_previous_root + suffix
                # EVAL, not EVALSHA: redis-py's cluster pipeline refuses the latter.
                pipe.execute_command("EVAL", WRITE_VIEW, 2, bc, bp, version, serving, doc)
            replies = pipe.execute()
        kept = {suffix: version for (suffix, _), (_, k) in zip(docs, replies, strict=True) if k}
        if kept:
            self.client.zadd(self.keys.batch_previous_index, kept, gt=True)
        created = sum(1 for code, _ in replies if code > 0)
        deleted = sum(1 for code, _ in replies if code < 0)
        return ViewChanges(created, deleted)

    def read_base(
        self, serving: int, group: str, entities: Sequence[str]
    ) -> dict[str, dict[str, Any] | None]:
        docs: dict[str, bytes | None] = {}
        for chunk in _chunks(list(entities), CHUNK):
            with self.client.pipeline(transaction=False) as pipe:
                for entity in chunk:
                    pipe.get(self.keys.batch_doc(group, entity))
                docs.update(zip(chunk, pipe.execute(), strict=True))
        newer = [e for e, doc in docs.items() if doc is not None and doc_version(doc) > serving]
        for chunk in _chunks(newer, CHUNK):  # a run that did not switch wrote these
            with self.client.pipeline(transaction=False) as pipe:
                for entity in chunk:
                    pipe.get(self.keys.batch_previous(group, entity))
                for entity, doc in zip(chunk, pipe.execute(), strict=True):
                    docs[entity] = doc if doc is not None and doc_version(doc) <= serving else None
        return {entity: _unstamped(doc) for entity, doc in docs.items()}

    def sweep_views(self, version: int, serving: int, groups: Collection[str] | None = None) -> int:
        swept = 0
        root = self.keys.batch_doc_root
        legacy_root = self.keys.legacy_view_root.encode()
        chunk: list[tuple[str, bytes]] = []
        prefix = _glob_escaped(self.keys.prefix)
        # A full sweep finds layout 1 keys again; a partial one follows runs that did
        # (tiles, and so partial sweeps, came with layout 2, after a full sweep).
        self._legacy_seen = False
        if groups is None:
            patterns = [f"{prefix}:b[cv]:*"]
        else:
            patterns = [f"{prefix}:bc:{_glob_escaped(g)}:*" for g in sorted(groups)]
        keys = (k for p in patterns for k in self.client.scan_iter(match=p, count=CHUNK))
        for key in keys:
            if key.startswith(legacy_root):
                self._legacy_seen = True
                continue
            chunk.append((key.decode()[len(root) :], b""))
            if len(chunk) >= SCRIPT_CHUNK:
                changes = self._write_docs(version, serving, chunk)
                if changes is None:
                    return swept
                swept += changes.deleted
                chunk = []
        if chunk:
            changes = self._write_docs(version, serving, chunk)
            swept += changes.deleted if changes is not None else 0
        return swept

    def switch(self, pointer: BatchPointer) -> int | None:
        replaced = int(
            self.client.eval(
                SWITCH_IF_NEWER,
                2,
                self.keys.batch_pointer,
                self.keys.batch_writing,
                orjson.dumps(pointer.to_json()),
                pointer.version,
            )
        )
        return None if replaced < 0 else replaced

    def pointer(self) -> BatchPointer | None:
        raw = self.client.get(self.keys.batch_pointer)
        return BatchPointer.parse(raw) if raw is not None else None

    def clean_views(self, keep_from: int) -> int:
        index = self.keys.batch_previous_index
        removed = start = 0
        while True:
            # Every suffix rewritten up to ``keep_from``, page by page.
            suffixes = self.client.zrangebyscore(index, "-inf", keep_from, start=start, num=CHUNK)
            if not suffixes:
                break
            start += len(suffixes)
            removed += self._clean_docs([s.decode() for s in suffixes], keep_from)
        # A suffix rewritten meanwhile has a higher score now and stays indexed.
        self.client.zremrangebyscore(index, "-inf", keep_from)
        if self._legacy_seen:
            removed += self._clean_legacy(keep_from)
        return removed

    def _clean_docs(self, suffixes: list[str], keep_from: int) -> int:
        pairs = [
            (self.keys.batch_doc_root + s, self.keys.batch_previous_root + s) for s in suffixes
        ]
        if self.multi_slot_scripts:
            removed = 0
            for chunk in _chunks(pairs, SCRIPT_CHUNK):
                keys = [key for pair in chunk for key in pair]
                removed += int(self._clean_script(keys=keys, args=[keep_from]))
            return removed
        with self.client.pipeline(transaction=False) as pipe:
            for bc, bp in pairs:
                pipe.execute_command("EVAL", CLEAN_PREVIOUS, 2, bc, bp, keep_from)
            return sum(int(n) for n in pipe.execute())

    def _clean_legacy(self, keep_from: int) -> int:
        """Layout 1's keys of versions older than ``keep_from`` (one key per version)."""
        removed = 0
        prefix = self.keys.legacy_view_root
        doomed: list[bytes] = []
        for key in self.client.scan_iter(match=f"{_glob_escaped(prefix)}*", count=CHUNK):
            version_text = key.decode()[len(prefix) :].split(":", 1)[0]
            if version_text.isdigit() and int(version_text) < keep_from:
                doomed.append(key)
            if len(doomed) >= CHUNK:
                removed += self._unlink(doomed)
                doomed = []
        if doomed:
            removed += self._unlink(doomed)
        return removed

    def _unlink(self, keys: list[bytes]) -> int:
        # One key per command: on a cluster, keys of different slots cannot share one.
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(pipe.execute())

    # --- speed layer -------------------------------------------------------------
    def watermarks(self, groups: Sequence[str]) -> dict[str, int | None]:
        marks = self.client.hmget(self.keys.speed_watermark, list(groups))
        return {g: int(m) if m is not None else None for g, m in zip(groups, marks, strict=True)}

    def server_identity(self) -> str | None:
        try:
            return str(self.client.info("server")["run_id"])
        except redis.RedisError:
            return None

    def keeps_acknowledged_writes(self) -> bool:
        try:
            return fsyncs_each_write(self.client.config_get("append*"))
        except redis.RedisError:  # CONFIG renamed or disabled (managed Redis): unknown
            return False

    def tile_target(self) -> TileTarget:
        return TileTarget(self.url, cluster=False)

    def set_speed_epoch(self, epoch: Mapping[str, Any]) -> None:
        self.client.set(self.keys.speed_epoch, orjson.dumps(epoch))

    def speed_epoch(self) -> dict[str, Any] | None:
        raw = self.client.get(self.keys.speed_epoch)
        return orjson.loads(raw) if raw is not None else None

    def speed_epoch_kept(self) -> bool:
        return bool(self.client.exists(self.keys.speed_epoch))

    def write_corrections(
        self,
        group: str,
        table: str,
        version: int,
        tiles: Mapping[str, Mapping[tuple[int, int], Sequence[Any]]],
        ttl_s: int,
    ) -> int:
        if not self.scripted_corrections:
            return self._write_corrections_pipelined(group, table, version, tiles, ttl_s)
        written = 0
        script = self._write_corrections_script
        with self.client.pipeline(transaction=False) as pipe:
            for chunk in _chunks(list(tiles.items()), SCRIPT_CHUNK):
                keys: list[str] = [self.keys.corrections_index(table)]
                args: list[Any] = [ttl_s, version]
                for entity, by_tile in chunk:
                    keys.append(self.keys.speed_tiles(group, entity))
                    args.append(len(by_tile))
                    for (start, width), partials in by_tile.items():
                        args += (
                            corrections.field_name(start, version, width),
                            orjson.dumps(partials),
                        )
                    written += len(by_tile)
                script(keys=keys, args=args, client=pipe)
            pipe.execute()
        return written

    def _write_corrections_pipelined(
        self,
        group: str,
        table: str,
        version: int,
        tiles: Mapping[str, Mapping[tuple[int, int], Sequence[Any]]],
        ttl_s: int,
    ) -> int:
        """:meth:`write_corrections` in commands, where a script may touch only keys of
        one slot (a cluster)."""
        written = 0
        index = self.keys.corrections_index(table)
        with self.client.pipeline(transaction=False) as pipe:
            for entity, by_tile in tiles.items():
                key = self.keys.speed_tiles(group, entity)
                mapping = {
                    corrections.field_name(start, version, width): orjson.dumps(partials)
                    for (start, width), partials in by_tile.items()
                }
                written += len(mapping)
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, ttl_s)
            pipe.execute()
        # The keys holding corrections, by the newest version each holds: retirement
        # finds them there (one slot: {meta}).
        members = {self.keys.speed_tiles(group, entity): version for entity in tiles}
        for chunk in _chunks(list(members.items()), CHUNK):
            self.client.zadd(index, dict(chunk), gt=True)
        return written

    def retire_corrections(self, table: str, covered: int) -> int:
        index = self.keys.corrections_index(table)
        retired = start = 0
        while True:
            # Every key up to ``covered``, page by page, before any leaves the index.
            keys = self.client.zrangebyscore(index, "-inf", covered, start=start, num=CHUNK)
            if not keys:
                break
            start += len(keys)
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hkeys(key)
                found = pipe.execute()
            with self.client.pipeline(transaction=False) as pipe:
                for key, fields in zip(keys, found, strict=True):
                    doomed = [f for f in fields if _covered_correction(f, covered)]
                    if doomed:
                        pipe.hdel(key, *doomed)
                        retired += len(doomed)
                pipe.execute()
        # A key written again meanwhile has a higher score now and stays indexed.
        self.client.zremrangebyscore(index, "-inf", covered)
        return retired

    def corrections_written(self, table: str) -> int | None:
        version = self.client.hget(self.keys.corrections_written, table)
        return int(version) if version is not None else None

    def set_corrections_written(self, table: str, version: int) -> None:
        self.client.hset(self.keys.corrections_written, table, version)

    def set_speed_stats(self, counts: Mapping[str, int]) -> None:
        self.client.hset(self.keys.speed_stats, mapping=dict(counts))

    def speed_stats(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall(self.keys.speed_stats).items()}

    def clear_speed_stats(self) -> None:
        self.client.delete(self.keys.speed_stats)

    # --- shared state ------------------------------------------------------------
    def save_runs(self, runs: Iterable[tuple[str, str, float]], keep: int) -> None:
        """Record (run id, record JSON, start time) and keep the newest ``keep``."""
        args: list[Any] = [keep]
        for run_id, record, started_at in runs:
            args += [run_id, record, started_at]
        self.client.eval(SAVE_RUNS, 2, self.keys.batch_runs, self.keys.batch_runs_index, *args)

    def has_runs(self) -> bool:
        return bool(self.client.exists(self.keys.batch_runs_index))

    def recent_runs(self, limit: int) -> list[bytes]:
        ids = self.client.zrevrange(self.keys.batch_runs_index, 0, limit - 1)
        if not ids:
            return []
        return [r for r in self.client.hmget(self.keys.batch_runs, ids) if r is not None]

    def publish_lag(self, consumer: str, lag: Mapping[str, int]) -> None:
        now = int(time.time() * 1000)
        fields = {
            f"{consumer}|{topic}": orjson.dumps({"behind": n, "at_ms": now})
            for topic, n in lag.items()
        }
        if fields:
            self.client.hset(self.keys.consumer_lag, mapping=fields)

    def publish_health(self, consumer: str, record: bytes) -> None:
        # One key (the {meta} slot): one round trip on a cluster too.
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.consumer_health, consumer, record)
            pipe.expire(self.keys.consumer_health, int(health.FORGET_AFTER_S))
            pipe.execute()

    def consumer_health(self) -> dict[bytes, bytes]:
        return dict(self.client.hgetall(self.keys.consumer_health))

    def drop_health(self, consumer: str) -> None:
        self.client.hdel(self.keys.consumer_health, consumer)

    def publish_report(self, report: str) -> None:
        self.client.set(self.keys.consistency, report)

    def append_journal(self, kind: str, record: bytes, at_ms: int, keep: int) -> None:
        key = self.keys.journal(kind)
        with self.client.pipeline(transaction=False) as pipe:  # cluster: no MULTI
            pipe.zadd(key, {record: at_ms})
            pipe.zremrangebyrank(key, 0, -keep - 1)
            pipe.execute()

    def journal(self, kind: str, since_ms: int = 0, limit: int = 1000) -> list[bytes]:
        newest = self.client.zrevrangebyscore(
            self.keys.journal(kind), "+inf", since_ms, start=0, num=limit
        )
        return newest[::-1]

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()


def _unstamped(doc: bytes | None) -> dict[str, Any] | None:
    """A stored document without its version (None for a tombstone)."""
    if doc is None or is_tombstone(doc):
        return None
    parsed = orjson.loads(doc)
    del parsed["@v"]
    return parsed


def _covered_correction(field: bytes, covered: int) -> bool:
    """Whether a speed tiles hash field is a correction tile of a version <= covered
    (``[start,version,width]``)."""
    if not field.startswith(b"["):
        return False
    return int(field.split(b",")[1]) <= covered


def fsyncs_each_write(config: Mapping[str, Any]) -> bool:
    """Whether a server's ``CONFIG GET append*`` reply makes each write durable."""
    return config.get("appendonly") == "yes" and config.get("appendfsync") == "always"


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _glob_escaped(text: str) -> str:
    """``text`` matched literally by SCAN's MATCH pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
