"""``lfp features``: inspect feature definitions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer
from rich.markup import escape

from feature_core.definitions import FeatureRepo
from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors, load_repo
from infra.cli.tables import Column, WideOption, print_table

app = typer.Typer(no_args_is_help=True, help="Inspect feature definitions.")


@app.command("validate")
@friendly_errors
def features_validate() -> None:
    """Load and validate the feature repo (LFP_FEATURE_REPO), and check each source's
    fields against its lake table: a field removed or retyped would break history."""
    from batch_layer.lake import schema_problems

    settings = get_settings()
    repo = load_repo(settings)
    problems = [
        problem
        for source in repo.sources
        for problem in schema_problems(settings.table_uri(source.table_name), source)
    ]
    if problems:
        for problem in problems:
            console.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(1)
    count = sum(len(g.features) for g in repo.groups)
    derived = (
        f", {len(repo.derived)} derived features, {len(repo.request_fields)} request fields"
        if repo.derived or repo.request_fields
        else ""
    )
    console.print(
        f"[green]✓[/green] {settings.feature_repo}: {len(repo.sources)} sources, "
        f"{len(repo.groups)} groups, {count} features{derived}; lake tables compatible"
    )


@app.command("describe")
@friendly_errors
def features_describe(name: str) -> None:
    """Describe a feature group, derived feature view or feature service by name."""
    repo = load_repo(get_settings())
    try:
        group = repo.group(name)
    except KeyError:
        group = None
    if group is not None:
        console.print(f"[bold]{group.name}[/bold] (feature group) {group.description}")
        console.print(f"entity: {group.entity.name} (join keys {group.entity.key_label})")
        source = group.source
        console.print(
            f"source: {source.name} (topic {source.topic_name}, table {source.table_name}, "
            f"event time {source.event_time})"
        )
        console.print(f"filter: {group.filter_sql()}")
        console.print(f"tile columns: {', '.join(c.key for c in group.tile_columns)}")
        for f in group.features:
            console.print(
                f"  {f.name}: {f.aggregation.name}({f.column or '*'}) over {f.window.name}"
            )
        return
    view = next((v for v in repo.derived_views if v.name == name), None)
    if view is not None:
        _describe_derived(repo, view.name, view.description)
        return
    try:
        service = repo.service(name)
    except KeyError as error:
        groups = ", ".join(g.name for g in repo.groups)
        views = ", ".join(v.name for v in repo.derived_views)
        known = f"; feature groups: {groups}" + (f"; derived features: {views}" if views else "")
        raise RuntimeError(f"{error.args[0]}{known}") from None
    console.print(f"[bold]{service.name}[/bold] (feature service) {service.description}")
    console.print(f"join keys: {', '.join(repo.join_keys_of(service.features)) or 'none'}")
    fields = {
        f.name: f
        for ref in service.features
        if ref in repo.derived
        for f in repo.derived[ref].request_fields
    }
    if fields:
        console.print(f"request fields: {_fields_text(fields.values())}", highlight=False)
    for i, ref in enumerate(service.features):
        default = service.defaults.get(ref)
        suffix = f" (default {default!r})" if default is not None else ""
        console.print(f"  {i:2d}. {ref}{suffix}")


def _fields_text(fields: Iterable[Any]) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in fields)


def _describe_derived(repo: FeatureRepo, view: str, description: str) -> None:
    """A derived feature view: each feature's expression, type, inputs and request fields."""
    features = [d for d in repo.derived.values() if d.view == view]
    console.print(f"[bold]{view}[/bold] (derived features) {escape(description)}")
    keys = repo.join_keys_of(d.qualified_name for d in features)
    console.print(f"join keys: {', '.join(keys) or 'none (request fields only)'}")
    fields = {f.name: f for d in features for f in d.request_fields}
    for field_ in fields.values():
        about = f": {field_.description}" if field_.description else ""
        console.print(
            f"request field {field_.name} ({field_.type}){escape(about)}", highlight=False
        )
    for one in features:
        console.print(f"  [bold]{one.name}[/bold] ({one.value_type})")
        console.print(f"    = {escape(repr(one.expression))}", highlight=False)
        console.print(f"    inputs: {', '.join(one.inputs) or '-'}", highlight=False)
        if one.request_fields:
            console.print(
                f"    request fields: {_fields_text(one.request_fields)}", highlight=False
            )


@app.command("list")
@friendly_errors
def features_list(wide: WideOption = False) -> None:
    """List every feature with its group, aggregation and window."""
    columns = [
        Column("group"),
        Column("entity", priority=20, wrap=True),
        Column("feature"),
        Column("aggregation", priority=60),
        Column("column", priority=30),
        Column("window", priority=50),
        Column("hop", priority=10, justify="right"),
    ]
    rows = [
        [
            group.name,
            group.entity.key_label,
            f.name,
            f.aggregation.name,
            f.column or "*",
            f.window.name,
            f"{f.window.hop_ms // 60000:,}m",
        ]
        for group in load_repo(get_settings()).groups
        for f in group.features
    ]
    print_table(console, columns, rows, wide=wide)


@app.command("sources")
@friendly_errors
def features_sources() -> None:
    """List every declared source with its topic, lake table and fields."""
    columns = [Column("field"), Column("type"), Column("required")]
    columns.append(Column("constraints", wrap=True))
    for source in load_repo(get_settings()).sources:
        console.print(
            f"[bold]{escape(source.name)}[/bold]: topic {source.topic_name}, dead letters "
            f"{source.dlq_topic}, lake table {source.table_name}, event time {source.event_time}",
            soft_wrap=False,  # names only, no path: wrapped at the width, between words
            highlight=False,
        )
        rows = []
        for f in source.fields:
            constraints = [
                text
                for text, present in (
                    (f"one of {list(f.values or ())}", f.values is not None),
                    (f">= {f.min}", f.min is not None),
                    (f"<= {f.max}", f.max is not None),
                    (f"length >= {f.min_length}", f.min_length is not None),
                    (f"length <= {f.max_length}", f.max_length is not None),
                )
                if present
            ]
            rows.append([f.name, f.type, "yes" if f.required else "", ", ".join(constraints)])
        print_table(console, columns, rows)
        console.print()
