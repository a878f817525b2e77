"""The demo ranking model: its input vector, the saved artifact, scoring.

The model's input is the ``recommender`` feature service of ``demo.feature_repo``, taken
as it is: user and item aggregates and derived features over both (the category's share
of the user's views at the candidate's category, click-through rates, log-scaled counts,
idle time), declared once and computed by the platform. Training sets
(``build_training_set`` at each example's time) and the recommendations endpoint (the
serving layer at request time, the candidate's category as request context) get them
from the same definitions, so the model sees the same input offline and online, and no
feature is computed here.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import orjson

#: The model's input vector: one (user, candidate item) pair, context candidate_category.
SERVICE = "recommender"
#: The same pairs' aggregates without derived features: the baseline `make demo` reports.
BASELINE_SERVICE = "recommender_raw"
#: The request field the recommender gives with each candidate.
CONTEXT_FIELD = "candidate_category"
METADATA_FILE = "model.json"


def model_input(values: Sequence[Any]) -> list[float]:
    """A served vector (or a training row's features) as the estimator takes it: numbers
    as floats, a missing value (null: never clicked, say) as NaN, which the gradient
    boosting model routes as it learned to."""
    return [math.nan if v is None else float(v) for v in values]


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

    ``services`` pins the feature service to the version the model was trained on;
    ``features`` names its input vector's features in order (the service's, as trained);
    ``candidates`` are the items the endpoint scores (the most viewed of each category).
    """

    estimator: Any
    services: dict[str, str]
    features: list[str]
    catalog: dict[str, str]
    candidates: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: float = field(default_factory=time.time)
    training_rows: int = 0
    estimator_file: str = ""
    estimator_sha256: str = ""

    def score(self, items: Sequence[tuple[str, Sequence[Any]]]) -> list[Scored]:
        """Click probability of each (item id, input vector) for the user, best first."""
        if not items:
            return []
        width = {len(values) for _, values in items}
        if width != {len(self.features)}:
            raise ValueError(
                f"the model takes {len(self.features)} features, got vectors of {sorted(width)}"
            )
        probabilities = self.estimator.predict_proba([model_input(v) for _, v in items])[:, 1]
        scored = [
            Scored(item_id, self.catalog[item_id], float(p))
            for (item_id, _), p in zip(items, probabilities, strict=True)
        ]
        return sorted(scored, key=lambda s: (-s.score, s.item_id))

    def metadata(self) -> dict[str, Any]:
        return {
            "services": self.services,
            "features": self.features,
            "catalog": self.catalog,
            "candidates": self.candidates,
            "metrics": self.metrics,
            "trained_at": self.trained_at,
            "training_rows": self.training_rows,
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
        features = meta.get("features")
        if not isinstance(features, list) or SERVICE not in meta.get("services", {}):
            # A model of the pair features the demo computed itself (before they were
            # declared as derived features): another input.
            raise ValueError(
                f"model in {directory} was not trained on the {SERVICE} feature service: "
                "retrain it with `lfp demo train`"
            )
        name, digest = meta.get("estimator_file"), meta.get("estimator_sha256")
        estimator = joblib.load(io.BytesIO(verified_bytes(directory, name, digest)))
        return cls(
            estimator,
            meta["services"],
            features,
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
