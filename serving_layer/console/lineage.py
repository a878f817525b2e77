"""A feature's lineage as a graph, laid out left to right for a server-rendered SVG.

Upstream: the event source, its Kafka topic (and dead-letter topic), the lake table lake
ingest writes, the feature group the speed job (from the topic) and the batch job (from
the table) compute, and for a derived feature every input's chain. Downstream: the
derived features that read it, the feature services that list it, and what the Feast
export (:mod:`serving_layer.feast_repo`) names for it: the group's feature view, a derived
view's on-demand feature view, a service's Feast feature service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from feature_core.definitions import FeatureGroup, FeatureRepo

#: Node kinds, in the order they are drawn within a column, with their captions.
KINDS = {
    "source": "event source",
    "topic": "Kafka topic",
    "lake table": "Delta lake table",
    "dead-letter topic": "dead-letter topic",
    "group": "feature group",
    "feature": "feature",
    "derived": "derived feature",
    "feast view": "Feast feature view",
    "feast on-demand view": "Feast on-demand view",
    "service": "feature service",
    "feast service": "Feast feature service",
}

NODE_WIDTH = 184
NODE_HEIGHT = 44
COLUMN_GAP = 48
ROW_GAP = 18
#: Room around the graph; above it, the lane of the first row's long edges.
MARGIN = 16
#: Longer names are cut in the box (the full name is in its tooltip).
LABEL_CHARS = 25


@dataclass(frozen=True)
class Node:
    kind: str
    name: str
    #: A console page about it, if there is one.
    href: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


@dataclass
class Graph:
    """Nodes by (kind, name) and the edges between them, with what moves data along each."""

    focus: tuple[str, str] | None = None
    nodes: dict[tuple[str, str], Node] = field(default_factory=dict)
    edges: dict[tuple[tuple[str, str], tuple[str, str]], str] = field(default_factory=dict)

    def add(self, kind: str, name: str, href: str | None = None) -> tuple[str, str]:
        node = Node(kind, name, href)
        self.nodes.setdefault(node.key, node)
        return node.key

    def link(self, start: tuple[str, str], end: tuple[str, str], how: str = "") -> None:
        self.edges.setdefault((start, end), how)


def feature_href(reference: str) -> str:
    view, _, name = reference.partition(":")
    return f"/console/features/{view}/{name}"


def feature_lineage(repo: FeatureRepo, reference: str) -> Graph:
    """The lineage graph of one ``group:feature`` or derived ``view:feature``
    (:class:`KeyError` for one the repo does not have)."""
    graph = Graph()
    focus = _upstream(repo, graph, reference)
    graph.focus = focus
    _downstream(repo, graph, reference, focus)
    return graph


def _group_chain(graph: Graph, group: FeatureGroup) -> tuple[str, str]:
    source = group.source
    origin = graph.add("source", source.name, f"/console?q={source.name}#source-{source.name}")
    topic = graph.add("topic", source.topic_name)
    graph.link(origin, topic, "producers send events")
    graph.link(topic, graph.add("dead-letter topic", source.dlq_topic), "rejected records")
    table = graph.add("lake table", source.table_name)
    graph.link(topic, table, "lake ingest")
    node = graph.add("group", group.name, f"/console?q={group.name}#group-{group.name}")
    graph.link(topic, node, "speed job (tiles)")
    graph.link(table, node, "batch job (views)")
    return node


def _upstream(repo: FeatureRepo, graph: Graph, reference: str) -> tuple[str, str]:
    derived = repo.derived.get(reference)
    if derived is not None:
        node = graph.add("derived", reference, feature_href(reference))
        for one in derived.inputs:
            graph.link(_upstream(repo, graph, one), node, "input")
        return node
    group_name, _, feature_name = reference.partition(":")
    group = repo.group(group_name)
    if feature_name not in group.feature_names:
        raise KeyError(f"{group_name} has no feature {feature_name!r}")
    node = graph.add("feature", reference, feature_href(reference))
    graph.link(_group_chain(graph, group), node, "aggregation")
    return node


def _downstream(repo: FeatureRepo, graph: Graph, reference: str, node: tuple[str, str]) -> None:
    if reference in repo.derived:
        view = repo.derived[reference].view
        graph.link(node, graph.add("feast on-demand view", view), "lfp feast export")
    else:
        group = reference.partition(":")[0]
        graph.link(node, graph.add("feast view", group), "lfp feast export")
    for service in repo.services:
        if reference in service.features:
            listed = graph.add("service", service.name, f"/console?q={service.name}")
            graph.link(node, listed, "listed in")
            graph.link(listed, graph.add("feast service", service.name), "lfp feast export")
    for derived in repo.derived.values():
        if reference in derived.inputs:
            reader = graph.add(
                "derived", derived.qualified_name, feature_href(derived.qualified_name)
            )
            graph.link(node, reader, "input")
            _downstream(repo, graph, derived.qualified_name, reader)


@dataclass(frozen=True)
class PlacedNode:
    node: Node
    x: int
    y: int
    caption: str
    label: str
    focus: bool


@dataclass(frozen=True)
class PlacedEdge:
    path: str
    how: str
    start: Node
    end: Node


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def layout(graph: Graph) -> Layout:
    """Columns by longest path from the graph's sources (every edge points right), rows
    within a column by the mean row of each node's predecessors (fewer crossings), then
    by kind and name."""
    parents: dict[tuple[str, str], list[tuple[str, str]]] = {k: [] for k in graph.nodes}
    for start, end in graph.edges:
        parents[end].append(start)
    column: dict[tuple[str, str], int] = {}

    def depth(key: tuple[str, str], seen: frozenset = frozenset()) -> int:
        if key not in column:
            if key in seen:  # definitions are acyclic; never loop on a bad graph
                return 0
            column[key] = max((depth(p, seen | {key}) + 1 for p in parents[key]), default=0)
        return column[key]

    for key in graph.nodes:
        depth(key)
    order = list(KINDS)
    rows: dict[tuple[str, str], int] = {}
    columns: dict[int, list[tuple[str, str]]] = {}
    for key in graph.nodes:
        columns.setdefault(column[key], []).append(key)
    for index in sorted(columns):
        keys = columns[index]

        def place(key: tuple[str, str]) -> tuple[float, int, str]:
            placed = [rows[p] for p in parents[key] if p in rows]
            mean = sum(placed) / len(placed) if placed else 0.0
            return (mean, order.index(key[0]) if key[0] in order else len(order), key[1])

        for row, key in enumerate(sorted(keys, key=place)):
            rows[key] = row
    position = {
        key: (
            MARGIN + column[key] * (NODE_WIDTH + COLUMN_GAP),
            MARGIN + rows[key] * (NODE_HEIGHT + ROW_GAP),
        )
        for key in graph.nodes
    }
    nodes = [
        PlacedNode(
            node,
            *position[key],
            KINDS.get(node.kind, node.kind),
            node.name if len(node.name) <= LABEL_CHARS else f"{node.name[: LABEL_CHARS - 1]}…",
            key == graph.focus,
        )
        for key, node in graph.nodes.items()
    ]
    edges = [
        PlacedEdge(_path(position[start], position[end]), how, graph.nodes[start], graph.nodes[end])
        for (start, end), how in graph.edges.items()
    ]
    width = 2 * MARGIN + (max(column.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP)
    height = 2 * MARGIN + max(len(c) for c in columns.values()) * (NODE_HEIGHT + ROW_GAP)
    return Layout(width - COLUMN_GAP, height - ROW_GAP, nodes, edges)


def _path(start: tuple[int, int], end: tuple[int, int]) -> str:
    """An edge from the right of one box to the left of another. One that skips columns
    runs along the gap above the higher of its two rows, not through the boxes between."""
    x1, y1 = start[0] + NODE_WIDTH, start[1] + NODE_HEIGHT // 2
    x2, y2 = end[0], end[1] + NODE_HEIGHT // 2
    bend = COLUMN_GAP // 2
    if x2 - x1 <= COLUMN_GAP:
        return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2 - 4},{y2}"
    lane = min(start[1], end[1]) - ROW_GAP // 2
    return (
        f"M{x1},{y1} C{x1 + bend},{y1} {x1 + bend},{lane} {x1 + 2 * bend},{lane} "
        f"L{x2 - 2 * bend},{lane} C{x2 - bend},{lane} {x2 - bend},{y2} {x2 - 4},{y2}"
    )
