"""Runs in Feast's own environment (.venv-feast), not ours: drives the real Feast SDK.

Reads JSON commands on stdin, one a line, and answers each with one JSON line on stdout
(one process for a whole test module: importing Feast takes seconds of CPU, paid once; a
command that raises is answered ``{"exception": traceback}`` and the next one is read):
- ``{"repo": dir, "read": [case, ...]}``: each case is a ``/get-online-features`` body;
  the SDK's ``get_online_features(...).to_dict()`` for it (a feature service by name),
  with the entity rows given row by row as SDK users do, or ``{"error": ...}``;
- ``{"repo": dir, "write": [{"view": name, "time_field": name, "rows": [...]}]}``: rows
  written with ``write_to_online_store`` (the time field as ISO-8601 text);
- ``{"repo": dir, "serve": [case, ...]}``: each case read from the repo's own online store
  and answered as JSON as ``feast serve`` answers it (its ``convert_response_to_dict``);
- ``{"repo": dir, "decode": response}``: a ``/get-online-features`` JSON answer read as
  the SDK's remote online store reads the server's, ``{"dict": to_dict(), "types": {name:
  [the Value proto's field per value]}}`` (the field says which type Feast inferred);
- ``{"repo": dir, "dtypes": true}``: each registered feature view's ``{feature: dtype}``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import pandas as pd
from feast import FeatureStore
from feast.feature_server_utils import convert_response_to_dict
from feast.infra.online_stores.remote import RemoteOnlineStore


def online_features(store: FeatureStore, case: dict):
    entities = case["entities"]
    keys = list(entities)
    rows = [dict(zip(keys, values, strict=True)) for values in zip(*entities.values(), strict=True)]
    features = (
        store.get_feature_service(case["feature_service"])
        if case.get("feature_service")
        else case["features"]
    )
    return store.get_online_features(
        features=features,
        entity_rows=rows,
        full_feature_names=case.get("full_feature_names", False),
    )


def read(store: FeatureStore, case: dict) -> dict:
    try:
        return {"dict": online_features(store, case).to_dict()}
    except Exception as error:  # reported to the test, which asserts on it
        return {"error": f"{type(error).__name__}: {error}"}


def decode(response: dict) -> dict:
    """What the SDK makes of a server's JSON answer (remote online store)."""
    try:
        decoded = RemoteOnlineStore()._build_online_response_from_json(response)
    except Exception as error:  # reported to the test, which asserts on it
        return {"error": f"{type(error).__name__}: {error}"}
    names = list(decoded.proto.metadata.feature_names.val)
    types = {
        name: [value.WhichOneof("val") for value in result.values]
        for name, result in zip(names, decoded.proto.results, strict=True)
    }
    return {"dict": decoded.to_dict(), "types": types}


def write(store: FeatureStore, view: str, time_field: str, rows: list[dict]) -> None:
    # A map as JSON text, which Feast's Map conversion parses: a frame of dicts goes
    # through Arrow as a struct (the keys of all rows merged, counts turned to floats).
    rows = [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()} for r in rows]
    frame = pd.DataFrame(rows)
    frame[time_field] = pd.to_datetime(frame[time_field], utc=True)
    store.write_to_online_store(view, frame)


def handle(command: dict) -> object:
    """One command's answer (a new FeatureStore each time, as a fresh process had)."""
    store = FeatureStore(repo_path=command["repo"])
    if "read" in command:
        return [read(store, case) for case in command["read"]]
    if "serve" in command:
        return [
            convert_response_to_dict(online_features(store, case).proto)
            for case in command["serve"]
        ]
    if "decode" in command:
        return decode(command["decode"])
    if "dtypes" in command:
        return {
            view.name: {field.name: str(field.dtype) for field in view.features}
            for view in store.list_feature_views()
        }
    for one in command["write"]:
        write(store, one["view"], one["time_field"], one["rows"])
    return {"written": sum(len(one["rows"]) for one in command["write"])}


def main() -> None:
    # Answers go to the real stdout alone: anything Feast prints goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    for line in sys.stdin:
        try:
            answer = handle(json.loads(line))
        except Exception:  # reported to the test, which fails with it
            answer = {"exception": traceback.format_exc()}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
