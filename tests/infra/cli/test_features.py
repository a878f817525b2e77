"""`lfp features list|sources|validate` on the demo's and the fraud example's repos, at
80 columns."""

from __future__ import annotations

import pytest

from feature_core.definitions import FeatureRepo
from tests.infra.cli.terminal import assert_readable, header_of, lfp, row_of

REPOS = ["demo.feature_repo", "tests.integration.both_workloads"]


def test_validate_and_list_show_the_demo_features(monkeypatch):
    monkeypatch.setenv("LFP_FEATURE_REPO", "demo.feature_repo")
    assert lfp("features", "validate").exit_code == 0
    listed = lfp("features", "list", columns=200)
    assert "purchase_amount_sum_1h" in listed.output


@pytest.mark.parametrize("module", REPOS)
def test_list_at_80_columns_shows_every_feature_whole_with_its_group(monkeypatch, module):
    monkeypatch.setenv("LFP_FEATURE_REPO", module)
    result = lfp("features", "list")
    assert result.exit_code == 0, result.output
    assert_readable(result.output)
    header = header_of(result.output)
    assert header[:1] == ["group"] and "feature" in header and "aggregation" in header
    rows = [line.split() for line in result.output.splitlines()]
    for group in FeatureRepo.from_module(module).groups:
        for feature in group.features:  # one line each, its group first, names whole
            assert any(r[:1] == [group.name] and feature.name in r[1:3] for r in rows), (
                group.name,
                feature.name,
            )
    assert "--wide adds" in " ".join(result.output.split())


@pytest.mark.parametrize("module", REPOS)
def test_list_wide_shows_every_column(monkeypatch, module):
    monkeypatch.setenv("LFP_FEATURE_REPO", module)
    result = lfp("features", "list", "--wide")
    assert result.exit_code == 0, result.output
    assert header_of(result.output) == [
        "group",
        "entity",
        "feature",
        "aggregation",
        "column",
        "window",
        "hop",
    ]
    assert "…" not in result.output and "--wide adds" not in result.output
    repo = FeatureRepo.from_module(module)
    group = repo.groups[0]
    feature = group.features[0]
    row = row_of(result.output, group.name).split()
    assert row[-4:] == [
        feature.aggregation.name,
        feature.column or "*",
        feature.window.name,
        f"{feature.window.hop_ms // 60000:,}m",
    ]


def test_sources_at_80_columns(monkeypatch):
    monkeypatch.setenv("LFP_FEATURE_REPO", "tests.integration.both_workloads")
    result = lfp("features", "sources")
    assert result.exit_code == 0, result.output
    assert_readable(result.output)
    flat = " ".join(result.output.split())
    for source in FeatureRepo.from_module("tests.integration.both_workloads").sources:
        assert f"{source.name}: topic {source.topic_name}, dead letters" in flat
        assert f"lake table {source.table_name}, event time {source.event_time}" in flat
        for field in source.fields:
            assert field.name in result.output
    assert "one of ['view', 'click', 'add_to_cart', 'purchase']" in flat  # wrapped, whole
    assert row_of(result.output, "event_id").split()[:3] == ["event_id", "string", "yes"]
