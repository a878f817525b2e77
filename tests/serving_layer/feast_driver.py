"""Runs in Feast's own environment (.venv-feast), not ours: drives the real Feast SDK.

Reads one JSON command on stdin and prints one JSON answer:
- ``{"repo": dir, "read": [case, ...]}``: each case is a ``/get-online-features`` body;
  the SDK's ``get_online_features(...).to_dict()`` for it (a feature service by name),
  with the entity rows given row by row as SDK users do, or ``{"error": ...}``;
- ``{"repo": dir, "write": [{"view": name, "time_field": name, "rows": [...]}]}``: rows
  written with ``write_to_online_store`` (the time field as ISO-8601 text).
"""

from __future__ import annotations

import json
import sys

import pandas as pd
from feast import FeatureStore


def read(store: FeatureStore, case: dict) -> dict:
    entities = case["entities"]
    keys = list(entities)
    rows = [dict(zip(keys, values, strict=True)) for values in zip(*entities.values(), strict=True)]
    features = (
        store.get_feature_service(case["feature_service"])
        if case.get("feature_service")
        else case["features"]
    )
    try:
        response = store.get_online_features(
            features=features,
            entity_rows=rows,
            full_feature_names=case.get("full_feature_names", False),
        )
        return {"dict": response.to_dict()}
    except Exception as error:  # reported to the test, which asserts on it
        return {"error": f"{type(error).__name__}: {error}"}


def write(store: FeatureStore, view: str, time_field: str, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame[time_field] = pd.to_datetime(frame[time_field], utc=True)
    store.write_to_online_store(view, frame)


def main() -> None:
    command = json.load(sys.stdin)
    store = FeatureStore(repo_path=command["repo"])
    if "read" in command:
        answer = [read(store, case) for case in command["read"]]
    else:
        for one in command["write"]:
            write(store, one["view"], one["time_field"], one["rows"])
        answer = {"written": sum(len(one["rows"]) for one in command["write"])}
    json.dump(answer, sys.stdout, default=str)


if __name__ == "__main__":
    main()
