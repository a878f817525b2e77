"""Random records from a schema: always valid, varied, within the constraints."""

import random

import pytest

from demo.feature_repo import events as shop
from feature_core.synthetic import random_record
from fraud.feature_repo import logins, transactions

NOW = 1_767_225_600_000


@pytest.mark.parametrize("source", [shop, transactions, logins], ids=lambda s: s.name)
def test_every_generated_record_passes_the_sources_validator(source):
    rng = random.Random(1)
    records = [random_record(source, rng, NOW) for _ in range(300)]
    for record in records:
        assert source.check(record, NOW) == record
        assert record[source.event_time] == NOW
    for f in source.fields:
        seen = {r[f.name] for r in records}
        if f.values is not None:
            assert seen - {None} <= set(f.values) and len(seen - {None}) > 1
        elif f.name != source.event_time:
            assert len(seen) > 1, f.name  # varied, nulls included when nullable
