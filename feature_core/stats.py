"""Feature statistics and drift: what a feature's values look like, and how far they moved.

Pure (no Spark): the batch job summarizes a sample of the values it serves at its cutoff,
a training set build the feature columns it wrote, both with :func:`feature_stats`, and
records them in the operations journals (:mod:`feature_core.journals`) as
:class:`RunFeatureStats` and :class:`TrainingFeatureStats`; ``/metrics`` and the console
read them back.

**The drift measure** is the Population Stability Index of the current values against a
baseline, binned on the baseline's bins (:func:`psi`):

    PSI = sum over bins of (a_i - e_i) * ln(a_i / e_i)

with ``e_i`` the baseline's share of values in bin ``i`` and ``a_i`` the current one's.
The bins are the baseline's: for numbers, the intervals between its deciles (ties merged),
for text, booleans and maps' keys its ``TOP_VALUES`` most common values plus one bin for
all others; null is a bin of its own in both (a field that turns null drifts). A share of
0 is taken as ``PSI_EPSILON`` (1e-4), so one empty bin adds a bounded term instead of
infinity. PSI is 0 for equal distributions and grows as they move apart; conventionally
< 0.1 is stable, 0.1-0.25 a moderate shift, > 0.25 a large one. The platform flags a
feature over ``LFP_DRIFT_PSI_THRESHOLD`` (``DEFAULT_PSI_THRESHOLD``, 0.2). Over small
samples PSI is noisy: two samples of ``n`` values of one distribution over 10 bins give
about ``9 * (1/n1 + 1/n2)`` (0.001 at 20,000 values each, 0.36 at 50).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from feature_core.statuses import ValueStatus

#: The quantiles recorded for numeric features (numpy's default, linear interpolation).
QUANTILE_LEVELS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
#: Where the numeric PSI bins are cut: the baseline's deciles.
BIN_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Most common values (maps: keys) recorded, and binned by PSI (the rest are one bin).
TOP_VALUES = 10
#: The share an empty bin counts as in PSI (a 0 would make it infinite).
PSI_EPSILON = 1e-4
#: The default flagging threshold (LFP_DRIFT_PSI_THRESHOLD).
DEFAULT_PSI_THRESHOLD = 0.2
#: The category of an empty map (a map's categories are its keys).
EMPTY_MAP = "{}"

Kind = Literal["numeric", "categorical", "other"]
CategoriesOf = Literal["values", "keys"]


class TopValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str
    share: float = Field(description="Of the non-null values: equal to it (maps: holding it).")


class FeatureStats(BaseModel):
    """One feature's values summarized: what the console shows and what PSI bins on."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    categories_of: CategoriesOf | None = Field(
        None, description="categorical: values (text, booleans) or keys (maps)."
    )
    count: int = Field(description="Values looked at.")
    no_data_rate: float | None = Field(
        None, description="Share with status no_data (None: no statuses, a training set)."
    )
    null_rate: float = Field(description="Share that is null (or not a finite number).")
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: dict[str, float] | None = Field(
        None, description="Level (QUANTILE_LEVELS, as text) -> value, numeric only."
    )
    top: list[TopValue] | None = Field(None, description="Most common values, categorical.")
    distinct: int | None = Field(None, description="Distinct values (keys) seen, categorical.")
    edges: list[float] | None = Field(
        None, description="Numeric PSI bins: (-inf, e1), [e1, e2), ..., [en, inf)."
    )
    categories: list[str] | None = Field(
        None, description="Categorical PSI bins: these, then one for every other."
    )
    fractions: list[float] | None = Field(
        None, description="Share of the non-null values (maps: key occurrences) per bin."
    )


class Drift(BaseModel):
    """A feature's PSI against each baseline (None: no baseline, or not comparable)."""

    model_config = ConfigDict(extra="forbid")

    previous_run: float | None = None
    training: float | None = None


class RunFeatureStats(BaseModel):
    """Journal.FEATURE_STATS: one batch run's features as served at its cutoff."""

    model_config = ConfigDict(extra="forbid")

    at_ms: int
    run_id: str | None = None
    view_version: int
    cutoff: int
    entities: dict[str, int] = Field(description="Group -> entities in the batch view.")
    sampled: dict[str, int] = Field(description="Group -> entities summarized (a sample).")
    features: dict[str, FeatureStats] = Field(description="'group:feature' -> statistics.")
    drift: dict[str, Drift] = Field(default_factory=dict, description="'group:feature' -> PSI.")
    threshold: float = Field(description="PSI over this is flagged (LFP_DRIFT_PSI_THRESHOLD).")
    previous_run_id: str | None = Field(None, description="The run drift compares with.")
    training_sets: dict[str, str] = Field(
        default_factory=dict,
        description="'group:feature' -> the training set its training drift compares with.",
    )

    def flagged(self, threshold: float | None = None) -> dict[str, list[str]]:
        """Features over the threshold (this record's unless given), per baseline."""
        limit = self.threshold if threshold is None else threshold
        found: dict[str, list[str]] = {"previous_run": [], "training": []}
        for reference, drift in self.drift.items():
            for baseline, value in drift.model_dump().items():
                if value is not None and value > limit:
                    found[baseline].append(reference)
        return found


class TrainingFeatureStats(BaseModel):
    """Journal.TRAINING_STATS: a training set's feature columns, a drift baseline."""

    model_config = ConfigDict(extra="forbid")

    at_ms: int
    training_set: str = Field(description="Where it was written (path or URI).")
    service: str | None = None
    rows: int
    sampled: int = Field(description="Rows summarized (a uniform sample).")
    features: dict[str, FeatureStats] = Field(description="'group:feature' -> statistics.")


def declared_kind(type_name: str, shape: str) -> tuple[Kind, CategoriesOf | None]:
    """The statistics kind of a declared value type (field type name and shape)."""
    if shape == "map":
        return "categorical", "keys"
    if shape != "scalar":
        return "other", None
    if type_name in ("integer", "float", "timestamp"):
        return "numeric", None
    if type_name in ("string", "boolean"):
        return "categorical", "values"
    return "other", None


def inferred_kind(values: Iterable[Any]) -> tuple[Kind, CategoriesOf | None]:
    """The kind of values whose type is not declared: that of the first non-null one."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool | str):
            return "categorical", "values"
        if isinstance(value, int | float):
            return "numeric", None
        if isinstance(value, Mapping):
            return "categorical", "keys"
        return "other", None
    return "numeric", None


#: Types whose values NumPy converts to floats as :func:`_number` does (None -> NaN).
_PLAIN_NUMBERS = frozenset({int, float, type(None)})


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (booleans, text, NaN and infinities count as
    null): converted by NumPy in one call when they are plain numbers and nulls."""
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        array = np.array(values, dtype=float)
        return array[np.isfinite(array)]
    return np.array([n for n in map(_number, values) if n is not None], dtype=float)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _category(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list | tuple):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _units(value: Any, categories_of: CategoriesOf) -> list[str] | None:
    """A value's categories: itself, or a map's keys ([EMPTY_MAP] when it has none);
    None when it counts as null."""
    if categories_of == "keys":
        if not isinstance(value, Mapping):
            return None
        return [str(k) for k in value] or [EMPTY_MAP]
    category = _category(value)
    return None if category is None else [category]


def _quantiles(numbers: np.ndarray, levels: Sequence[float]) -> list[float]:
    return [float(q) for q in np.quantile(numbers, levels)]


def feature_stats(
    values: Sequence[Any],
    statuses: Sequence[str] | None = None,
    kind: Kind | None = None,
    categories_of: CategoriesOf | None = None,
) -> FeatureStats:
    """The statistics of one feature's values (``statuses``: each value's, when served).

    ``kind`` is the declared one (:func:`declared_kind`); inferred from the values when
    not given. A value that does not fit the kind (text in a numeric feature, NaN) counts
    as null."""
    if kind is None:
        kind, categories_of = inferred_kind(values)
    elif kind == "categorical" and categories_of is None:
        categories_of = "values"
    count = len(values)
    no_data = None
    if statuses is not None:
        if len(statuses) != count:
            raise ValueError(f"{len(statuses)} statuses for {count} values")
        no_data = list(statuses).count(ValueStatus.NO_DATA) / count if count else 0.0
    if kind == "numeric":
        numbers = _numbers(values)
        stats = FeatureStats(
            kind=kind,
            count=count,
            no_data_rate=no_data,
            null_rate=(count - len(numbers)) / count if count else 0.0,
        )
        if len(numbers) == 0:
            stats.edges, stats.fractions = [], [0.0]
            return stats
        stats.mean = float(numbers.mean())
        stats.min, stats.max = float(numbers.min()), float(numbers.max())
        levels = _quantiles(numbers, QUANTILE_LEVELS)
        stats.quantiles = {str(level): q for level, q in zip(QUANTILE_LEVELS, levels, strict=True)}
        stats.edges = sorted(set(_quantiles(numbers, BIN_LEVELS)))
        stats.fractions = _numeric_fractions(numbers, stats.edges)
        return stats
    if kind == "categorical":
        assert categories_of is not None
        counts: Counter[str] = Counter()
        present = 0
        for value in values:
            units = _units(value, categories_of)
            if units is not None:
                present += 1
                counts.update(units)
        stats = FeatureStats(
            kind=kind,
            categories_of=categories_of,
            count=count,
            no_data_rate=no_data,
            null_rate=(count - present) / count if count else 0.0,
            distinct=len(counts),
        )
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_VALUES]
        stats.top = [TopValue(value=v, share=n / present) for v, n in ranked]
        stats.categories = [v for v, _ in ranked]
        stats.fractions = _categorical_fractions(counts, stats.categories)
        return stats
    nulls = sum(1 for v in values if v is None)
    return FeatureStats(
        kind="other",
        count=count,
        no_data_rate=no_data,
        null_rate=nulls / count if count else 0.0,
    )


def _numeric_fractions(numbers: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of ``numbers`` in each bin (-inf, e1), [e1, e2), ..., [en, inf)."""
    if len(numbers) == 0:
        return [0.0] * (len(edges) + 1)
    bins = np.searchsorted(np.asarray(edges, dtype=float), numbers, side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return [float(c) / len(numbers) for c in counts]


def _categorical_fractions(counts: Mapping[str, int], categories: Sequence[str]) -> list[float]:
    """Share of the category occurrences in each of ``categories``, then in all others."""
    total = sum(counts.values())
    if total == 0:
        return [0.0] * (len(categories) + 1)
    known = [counts.get(c, 0) / total for c in categories]
    return [*known, max(0.0, 1.0 - sum(known))]


def _distribution(null_rate: float, fractions: Sequence[float]) -> list[float]:
    """Bin shares of all values: the non-null ones' bins, then null."""
    return [(1.0 - null_rate) * f for f in fractions] + [null_rate]


def _on_baseline_bins(baseline: FeatureStats, current: Sequence[Any]) -> list[float] | None:
    """The current values' shares in the baseline's bins (None: no values)."""
    if not current:
        return None
    if baseline.kind == "numeric":
        numbers = _numbers(current)
        fractions = _numeric_fractions(numbers, baseline.edges or [])
        return _distribution((len(current) - len(numbers)) / len(current), fractions)
    assert baseline.categories_of is not None
    counts: Counter[str] = Counter()
    present = 0
    for value in current:
        units = _units(value, baseline.categories_of)
        if units is not None:
            present += 1
            counts.update(units)
    fractions = _categorical_fractions(counts, baseline.categories or [])
    return _distribution((len(current) - present) / len(current), fractions)


def _stats_on_baseline_bins(baseline: FeatureStats, current: FeatureStats) -> list[float]:
    """Another record's shares in the baseline's bins: its own when its bins are the
    same, else estimated (numeric: its quantiles read as a piecewise-linear CDF;
    categorical: its top values' shares, the rest in the baseline's other bin)."""
    if current.fractions is None:
        raise ValueError("statistics without bins")
    if baseline.kind == "numeric":
        edges = baseline.edges or []
        if current.edges == edges:
            return _distribution(current.null_rate, current.fractions)
        if current.quantiles is None or current.min is None or current.max is None:
            return _distribution(current.null_rate, [0.0] * (len(edges) + 1))
        points = [
            (0.0, current.min),
            *((float(level), q) for level, q in current.quantiles.items()),
            (1.0, current.max),
        ]
        points.sort()
        levels = [p[0] for p in points]
        quantiles = [p[1] for p in points]
        below = [0.0, *(float(np.interp(e, quantiles, levels)) for e in edges), 1.0]
        below = list(np.maximum.accumulate(below))
        fractions = [max(0.0, b - a) for a, b in itertools.pairwise(below)]
        return _distribution(current.null_rate, fractions)
    categories = baseline.categories or []
    if current.categories == categories:
        return _distribution(current.null_rate, current.fractions)
    own = dict(zip(current.categories or [], current.fractions, strict=False))
    known = [own.get(c, 0.0) for c in categories]
    return _distribution(current.null_rate, [*known, max(0.0, 1.0 - sum(known))])


def psi(baseline: FeatureStats, current: Sequence[Any] | FeatureStats) -> float | None:
    """Population Stability Index of ``current`` against ``baseline``, on the baseline's
    bins (see the module docstring): ``sum((a - e) * ln(a / e))``, a share of 0 taken
    as ``PSI_EPSILON``. ``current``: the values themselves (exact), or their recorded
    statistics (exact when binned alike, else estimated from their quantiles and top
    values). None when not comparable: no values on either side, kinds that differ, or
    a kind without bins ("other"). Reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large;
    flagged over ``DEFAULT_PSI_THRESHOLD`` (0.2) unless configured otherwise."""
    if baseline.count == 0 or baseline.kind == "other" or baseline.fractions is None:
        return None
    expected = _distribution(baseline.null_rate, baseline.fractions)
    if isinstance(current, FeatureStats):
        if (
            current.count == 0
            or current.kind != baseline.kind
            or current.categories_of != baseline.categories_of
        ):
            return None
        actual = _stats_on_baseline_bins(baseline, current)
    else:
        found = _on_baseline_bins(baseline, current)
        if found is None:
            return None
        actual = found
    total = 0.0
    for a, e in zip(actual, expected, strict=True):
        a, e = max(a, PSI_EPSILON), max(e, PSI_EPSILON)
        total += (a - e) * math.log(a / e)
    return max(0.0, total)
