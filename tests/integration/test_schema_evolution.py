"""Schema evolution on a running platform: a nullable field and a feature over it.

A stack of its own serves v1 of a source; after a restart on v2 (one more nullable field,
two features over it) the lake table has the new column in a Delta commit, old rows read
null, nothing was rewritten or lost, and old and new events are served exactly. A removed
or retyped field is refused by ``lfp features validate`` with what to do.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from typer.testing import CliRunner

from batch_layer.lake import open_table
from feature_core.definitions import FeatureRepo
from feature_core.merge import values_match
from feature_core.reference import evaluate
from feature_core.windows import MINUTE_MS, align_cutoff
from infra.cli import app
from tests.conftest import embedded_stack, wait_for
from tests.integration.evolving import v1, v2
from tests.integration.helpers import produce

pytestmark = pytest.mark.integration


def _visit(visitor: str, at_ms: int, referrer: str | None = None) -> dict:
    visit = {
        "visit_id": uuid.uuid4().hex,
        "visitor_id": visitor,
        "page": f"/p{at_ms % 7}",
        "visit_time": at_ms,
    }
    if referrer is not None:
        visit["referrer"] = referrer
    return visit


def _validate(data_dir, feature_repo: str) -> tuple[int, str]:
    """`lfp features validate` against the lake under ``data_dir``: exit code, output."""
    env = {"LFP_DATA_DIR": str(data_dir), "LFP_FEATURE_REPO": feature_repo}
    result = CliRunner().invoke(app, ["features", "validate"], env=env)
    return result.exit_code, " ".join(result.output.split())


def _lake(settings) -> list[dict]:
    table = open_table(settings.table_uri("visits"))
    return [] if table is None else table.to_pyarrow_table().to_pylist()


def test_a_nullable_field_added_on_a_running_platform(tmp_path, spark_factory):
    from batch_layer.job import run_batch

    visitors = [f"v{i}" for i in range(4)]
    now = int(time.time() * 1000)
    old = [_visit(visitors[i % 4], now - (i + 1) * 37 * MINUTE_MS) for i in range(30)]
    with embedded_stack(tmp_path, "tests.integration.evolving.v1") as settings:
        produce(settings, old, v1.visits)
        wait_for(lambda: len(_lake(settings)) == len(old), 120, "v1 visits in the lake")
    history = _lake(settings)
    versions_before = open_table(settings.table_uri("visits")).version()

    code, output = _validate(tmp_path, "tests.integration.evolving.v2")
    assert code == 0 and "lake tables compatible" in output, output

    with embedded_stack(tmp_path, "tests.integration.evolving.v2") as settings:
        live = int(time.time() * 1000)
        new = [_visit(visitors[i % 4], live - i * 1000, f"site{i % 3}") for i in range(20)]
        new.append(_visit(visitors[0], live - 500))  # a v2 visit without a referrer
        cutoff = align_cutoff(live) - 5 * MINUTE_MS
        repo = FeatureRepo.from_module("tests.integration.evolving.v2")
        run_batch(spark_factory(settings), settings, repo, cutoff)
        produce(settings, new, v2.visits)
        wait_for(lambda: len(_lake(settings)) == len(old) + len(new), 120, "v2 visits in the lake")
        rows = _lake(settings)
        # Old rows were not rewritten: the same values, the new field null.
        by_id = {r["visit_id"]: r for r in rows}
        for row in history:
            assert {k: by_id[row["visit_id"]][k] for k in row} == row
            assert by_id[row["visit_id"]]["referrer"] is None
        assert open_table(settings.table_uri("visits")).version() > versions_before

        group = repo.group("visitor_activity")
        records = [v2.visits.check(v) for v in [*old, *new]]
        newest = max(v["visit_time"] for v in new)

        def served() -> dict | None:
            response = httpx.post(
                f"{settings.api_url}/v1/features",
                json={
                    "features": [f.qualified_name for f in group.features],
                    "entities": visitors,
                },
                timeout=10,
            )
            if response.status_code != 200:
                return None
            body = response.json()
            if body["speed_watermarks"].get(group.name, 0) < newest:
                return None
            # The watermark passes the newest visit as soon as its tile is written, and
            # the job may read the others in a later mini-batch: wait for them all.
            want = evaluate(group, records, body["as_of"])
            for visitor, vector in zip(visitors, body["vectors"], strict=True):
                for feature, got in zip(group.features, vector["values"], strict=True):
                    if not values_match(got, want[visitor][feature.name]):
                        return None
            return body

        body = wait_for(served, 120, "the speed layer to serve the v2 visits")
        expected = evaluate(group, records, body["as_of"])
        for visitor, vector in zip(visitors, body["vectors"], strict=True):
            for feature, got in zip(group.features, vector["values"], strict=True):
                want = expected[visitor][feature.name]
                assert values_match(got, want), (visitor, feature.name, got, want)
        referrers = [
            v["values"][group.feature_names.index("referrers_1d")] for v in body["vectors"]
        ]
        assert any(referrers) and sum(referrers) > 0

    # Removing or retyping a field would break history: refused, with what to do.
    code, output = _validate(tmp_path, "tests.integration.evolving.broken")
    assert code == 1, output
    assert "field 'page' is in lake table" in output
    assert "declare it again (nullable) instead of removing it" in output
    assert "'referrer' is string in the lake but now declared as int64" in output
