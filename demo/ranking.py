"""The demo ranking model: pair features, the saved artifact, scoring.

One function, :func:`pair_features`, turns a user vector and an item vector (the
``recommender_user`` and ``recommender_item`` feature services) into the model's input. The
training set (point-in-time vectors from the lake) and the recommendations endpoint
(vectors from the serving layer) both call it, so the model sees the same input offline
and online.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import orjson

from demo.generator import CATEGORIES

USER_SERVICE = "recommender_user"
ITEM_SERVICE = "recommender_item"
METADATA_FILE = "model.json"

PAIR_FEATURES = (
    "category_affinity",
    "category_share_session",
    "session_items_viewed",
    "is_last_item",
    "minutes_since_last_event",
    "user_events_1h",
    "user_purchases_30d",
    "item_views_1h",
    "item_views_1d",
    "item_views_7d",
    "item_clicks_1h",
    "item_ctr_1d",
    "item_ctr_7d",
    "item_distinct_users_7d",
)


def _log(value: Any) -> float:
    return math.log1p(float(value or 0))


def _smoothed_share(hits: int, total: int) -> float:
    """``hits`` of ``total`` as a share, pulled toward the uniform share of a category
    (a user with no history is equally drawn to every category)."""
    return (hits + 1 / len(CATEGORIES)) / (total + 1)


def _ctr(clicks: Any, interactions: Any) -> float:
    """Clicks over views (interactions are views + clicks), smoothed toward 10%."""
    clicks = float(clicks or 0)
    views = max(float(interactions or 0) - clicks, 0.0)
    return (clicks + 1.0) / (views + 10.0)


def pair_features(
    user: Mapping[str, Any], item: Mapping[str, Any], item_id: str, category: str, now_ms: int
) -> list[float]:
    """Model input for one (user, item) pair; ``user``/``item`` map "group:feature" -> value."""
    history = user.get("user_browsing:category_history_7d") or []
    affinity = _smoothed_share(sum(1 for c in history if c == category), len(history))
    # The category's share of the current session's views (count_by over the session):
    # what the user is browsing right now, beside the 20 latest interactions above.
    in_session = user.get("user_views:views_by_category_session_30m") or {}
    share_session = _smoothed_share(
        in_session.get(category, 0), user.get("user_views:items_viewed_session_30m") or 0
    )
    last_event = user.get("user_browsing:last_event_time_lifetime")
    minutes_idle = (now_ms - last_event) / 60_000 if last_event else 7 * 24 * 60.0
    return [
        affinity,
        share_session,
        _log(user.get("user_views:items_viewed_session_30m")),
        1.0 if user.get("user_browsing:last_item_1h") == item_id else 0.0,
        _log(max(minutes_idle, 0.0)),
        _log(user.get("user_browsing:events_1h")),
        _log(user.get("user_purchases:purchases_30d")),
        _log(item.get("item_popularity:interactions_1h")),
        _log(item.get("item_popularity:interactions_1d")),
        _log(item.get("item_popularity:interactions_7d")),
        _log(item.get("item_clicks:clicks_1h")),
        _ctr(item.get("item_clicks:clicks_1d"), item.get("item_popularity:interactions_1d")),
        _ctr(item.get("item_clicks:clicks_7d"), item.get("item_popularity:interactions_7d")),
        _log(item.get("item_popularity:distinct_users_7d")),
    ]


def import_estimator_library() -> None:
    """Import what unpickling the estimator needs (``demo.train`` fits a scikit-learn
    ensemble), so a server can pay for it before its first request."""
    import sklearn.ensemble  # noqa: F401


@dataclass(frozen=True)
class Scored:
    item_id: str
    category: str
    score: float


@dataclass
class RankingModel:
    """A fitted classifier plus what it needs to be served safely.

    ``services`` pins each feature service to the version the model was trained on;
    ``candidates`` are the items the endpoint scores (the most viewed of each category).
    """

    estimator: Any
    services: dict[str, str]
    catalog: dict[str, str]
    candidates: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: float = field(default_factory=time.time)
    training_rows: int = 0
    estimator_file: str = ""
    estimator_sha256: str = ""

    def score(
        self,
        user: Mapping[str, Any],
        items: Sequence[tuple[str, Mapping[str, Any]]],
        now_ms: int,
    ) -> list[Scored]:
        """Click probability of each item for the user, best first."""
        if not items:
            return []
        rows = [
            pair_features(user, vector, item_id, self.catalog[item_id], now_ms)
            for item_id, vector in items
        ]
        probabilities = self.estimator.predict_proba(rows)[:, 1]
        scored = [
            Scored(item_id, self.catalog[item_id], float(p))
            for (item_id, _), p in zip(items, probabilities, strict=True)
        ]
        return sorted(scored, key=lambda s: (-s.score, s.item_id))

    def metadata(self) -> dict[str, Any]:
        return {
            "services": self.services,
            "catalog": self.catalog,
            "candidates": self.candidates,
            "metrics": self.metrics,
            "trained_at": self.trained_at,
            "training_rows": self.training_rows,
            "pair_features": list(PAIR_FEATURES),
            "estimator_file": self.estimator_file,
            "estimator_sha256": self.estimator_sha256,
        }

    def save(self, directory: Path) -> Path:
        """Write the estimator, then flip ``model.json`` to it (readers never see half)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.estimator_file = f"estimator-{int(self.trained_at * 1000)}.joblib"
        joblib.dump(self.estimator, directory / self.estimator_file)
        digest = hashlib.sha256((directory / self.estimator_file).read_bytes()).hexdigest()
        self.estimator_sha256 = digest
        staging = directory / f".{METADATA_FILE}.tmp"
        staging.write_bytes(orjson.dumps(self.metadata(), option=orjson.OPT_INDENT_2))
        os.replace(staging, directory / METADATA_FILE)
        # Keep the previous estimator: a reader may hold the previous model.json.
        for old in sorted(directory.glob("estimator-*.joblib"))[:-2]:
            old.unlink(missing_ok=True)
        return directory / METADATA_FILE

    @classmethod
    def load(cls, directory: Path) -> RankingModel:
        meta_path = directory / METADATA_FILE
        if not meta_path.exists():
            raise FileNotFoundError(
                f"no model in {directory}: train one with `lfp demo train` (or `make demo`)"
            )
        meta = orjson.loads(meta_path.read_bytes())
        if meta.get("pair_features") != list(PAIR_FEATURES):
            raise ValueError(f"model in {directory} was trained on other pair features: retrain it")
        name, digest = meta.get("estimator_file"), meta.get("estimator_sha256")
        estimator = joblib.load(io.BytesIO(verified_bytes(directory, name, digest)))
        return cls(
            estimator,
            meta["services"],
            meta["catalog"],
            meta["candidates"],
            meta["metrics"],
            meta["trained_at"],
            meta["training_rows"],
            name,
            digest,
        )


class ModelFileError(ValueError):
    """A model file named by a path, or whose bytes are not the ones recorded: refused
    before anything is unpickled (unpickling runs whatever code the file says)."""


def verified_bytes(directory: Path, name: object, sha256: object) -> bytes:
    """The bytes of model file ``name`` in ``directory``, once they hash to the recorded
    ``sha256``. Only a bare file name is taken (no directory part, no ``..``, not absolute),
    so a ``model.json`` cannot point the loader at a file elsewhere; the hash is checked
    on the bytes that are then loaded, so the file cannot change in between."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or Path(name).name != name
    ):
        raise ModelFileError(
            f"{METADATA_FILE} in {directory} names the model file {str(name)[:80]!r}: only a "
            "bare file name in the model folder is loaded; retrain with `lfp demo train`"
        )
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ModelFileError(
            f"{METADATA_FILE} in {directory} records no sha256 of {name}: a model saved "
            "without one is not loaded; retrain with `lfp demo train`"
        )
    data = (directory / name).read_bytes()
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), sha256.lower()):
        raise ModelFileError(
            f"model file {directory / name} does not match the sha256 in {METADATA_FILE} "
            "(changed since it was saved): not loaded; retrain with `lfp demo train`"
        )
    return data
