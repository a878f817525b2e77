"""Request and response models of the HTTP API (they are the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    FailFast,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from feature_core.merge import BatchPointer, ValueStatus

#: The longest join key value any endpoint takes.
MAX_KEY_LENGTH = 256
#: Most join key lists one Feast request may hold (no entity has nearly as many keys).
MAX_JOIN_KEYS = 64
EntityKey = Annotated[
    StrictStr,
    Field(min_length=1, max_length=MAX_KEY_LENGTH, description="An entity join key value."),
]
# Unions of strict types, tried left to right: one check per item, not one per member
# (3-4x faster on a body of 300,000 entities; the matches are the same).
#: An integer join key value given as a number: 64 bits, as Feast's Int64 keys.
IntegerKey = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]


def _few_join_keys(value: Any) -> Any:
    """Refuse a huge entity object before its values are validated one by one: 80,000
    keys with a wrong value each would cost two problem reports apiece."""
    if isinstance(value, dict) and len(value) > MAX_JOIN_KEYS:
        raise ValueError(f"at most {MAX_JOIN_KEYS} join keys, got {len(value)}")
    return value


KeyValue = Annotated[
    EntityKey | IntegerKey,
    Field(
        description="A join key value (integer keys may be numbers).",
        union_mode="left_to_right",
    ),
]
#: One entity: its join key value, or an object with every join key (composite entities).
EntityRef = Annotated[
    EntityKey | IntegerKey | Annotated[dict[str, KeyValue], BeforeValidator(_few_join_keys)],
    Field(
        description="The entity's join key value (an integer key's as text or a number: "
        '"007" and 7 name one entity), or an object naming each join key '
        '(e.g. {"card_id": "c1", "merchant_id": "m9"}); entities with several join keys '
        "need the object.",
        union_mode="left_to_right",
    ),
]
#: Request context: field name -> value, checked against each request field's declared type.
ContextValue = Annotated[
    StrictStr | StrictBool | StrictInt | StrictFloat | None,
    Field(union_mode="left_to_right"),
]
ContextObject = Annotated[
    dict[Annotated[str, Field(max_length=128)], ContextValue], Field(max_length=64)
]
# The 'group:feature' form is checked on resolution, whose message names the problem.
FeatureReference = Annotated[
    StrictStr, Field(max_length=512, description="A feature as 'group:feature'.")
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_fields(cls, data: Any) -> Any:
        """A body of many unknown fields is one problem, found before each is reported
        (70,000 of them cost 150 ms of the event loop, a report apiece); one or two still
        get pydantic's own message naming each."""
        if isinstance(data, dict) and len(data) > len(cls.model_fields):
            unknown = [k for k in data if k not in cls.model_fields]
            if len(unknown) > 2:
                shown = ", ".join(repr(str(k)[:64]) for k in unknown[:3])
                raise ValueError(f"{len(unknown)} unknown fields ({shown}, ...)")
        return data


#: The rule both feature requests follow, in their schemas: exactly one of a feature
#: service or a non-empty feature list (the other absent, null, or an empty list).
ONE_SELECTION: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["feature_service"],
            "properties": {
                "feature_service": {"type": "string"},
                "features": {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]},
            },
        },
        {
            "required": ["features"],
            "properties": {
                "features": {"type": "array", "minItems": 1},
                "feature_service": {"type": "null"},
            },
        },
    ]
}


class ErrorResponse(BaseModel):
    """Every error's body: what is wrong, and where it helps, what to do."""

    detail: str = Field(description="The problem, in words (never the request echoed back).")


_ERRORS = {
    401: "Missing or wrong bearer token (LFP_API_TOKEN is set).",
    404: "Unknown feature service or feature group.",
    413: "Body over LFP_API_MAX_BODY_BYTES.",
    415: "Body not sent as Content-Type: application/json.",
    422: "Invalid request; the detail names each problem.",
    503: "Redis unreachable, no batch view serving yet, or the speed layer writing its "
    "tiles again after Redis lost them; the detail says which and what to do.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with the one error body."""
    return {code: {"model": ErrorResponse, "description": _ERRORS[code]} for code in codes}


# --- /v1 -------------------------------------------------------------------------------


class FeaturesRequest(Request):
    """Which features, for which entities. Give ``feature_service`` or ``features``."""

    model_config = ConfigDict(
        json_schema_extra={
            **ONE_SELECTION,
            "examples": [
                {"feature_service": "ranking_features", "entities": ["u1", "u2"]},
                {
                    "features": ["user_purchases:spend_30d", "user_browsing:events_5m"],
                    "entities": [{"user_id": "u1"}],
                },
            ],
        }
    )

    feature_service: StrictStr | None = Field(None, description="A feature service name.")
    features: list[FeatureReference] | None = Field(
        None,
        fail_fast=True,
        description="Ad hoc feature list (all of one entity type); at most "
        "LFP_API_MAX_FEATURES, each once.",
    )
    entities: list[EntityRef] = Field(
        min_length=1, fail_fast=True, description="Entities; at most LFP_API_MAX_ENTITIES."
    )
    context: ContextObject | list[ContextObject] | None = Field(
        None,
        description="Request fields of the derived features asked for (e.g. "
        '{"candidate_category": "books"}): one object for every entity, or a list of one '
        "per entity. A declared field that is missing is a 422 naming it.",
    )


class BatchViewInfo(BaseModel):
    version: int
    cutoff: int = Field(description="The batch view covers events with event_time < cutoff.")
    delta_version: int | None = Field(
        description="Delta table version the view was read from, when it read one table."
    )
    delta_versions: dict[str, int | None] | None = Field(
        None, description="Each lake table the view was read from, with its Delta version."
    )

    @classmethod
    def of(cls, pointer: BatchPointer | None) -> BatchViewInfo | None:
        """The served view's identity, or None before any batch run."""
        if pointer is None:
            return None
        return cls(**cls.fields_of(pointer))

    @staticmethod
    def fields_of(pointer: BatchPointer) -> dict[str, Any]:
        """The same as a plain dict, for the hot path's direct JSON."""
        return {
            "version": pointer.version,
            "cutoff": pointer.cutoff,
            "delta_version": pointer.delta_version,
            "delta_versions": pointer.delta_versions,
        }


class EntityVector(BaseModel):
    entity_id: str | int | dict[str, Any] = Field(description="The entity, as the request gave it.")
    values: list[Any] = Field(description="Feature values, in feature_names order.")
    statuses: list[ValueStatus] = Field(description="Status of each value.")


class FeaturesResponse(BaseModel):
    """One vector per requested entity, in request order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "feature_service": "ranking_features",
                    "feature_names": ["user_purchases:spend_30d", "user_browsing:last_item_1h"],
                    "as_of": 1763800000000,
                    "batch": {
                        "version": 3,
                        "cutoff": 1763799600000,
                        "delta_version": 12,
                        "delta_versions": {"raw_events": 12},
                    },
                    "speed_watermarks": {
                        "user_purchases": 1763799999000,
                        "user_browsing": 1763799999500,
                    },
                    "vectors": [
                        {
                            "entity_id": "u1",
                            "values": [120.5, "i42"],
                            "statuses": ["present", "present"],
                        },
                        {
                            "entity_id": "u2",
                            "values": [0.0, ""],
                            "statuses": ["no_data", "default"],
                        },
                    ],
                }
            ]
        }
    )

    feature_service: str | None
    feature_names: list[str]
    as_of: int = Field(description="Query time (epoch ms): every window ends here.")
    batch: BatchViewInfo | None = Field(description="The batch view used; null before any.")
    speed_watermarks: dict[str, int] = Field(
        description="Per feature group: latest event time (epoch ms) in the speed view."
    )
    vectors: list[EntityVector]


class GroupFeatures(BaseModel):
    """Feature values of one entity in one feature group, and the views they came from."""

    group: str
    entity_id: str = Field(
        description="The entity: its key value, or a JSON array of its key values in the "
        "entity's join key order (composite entities)."
    )
    as_of: int = Field(description="Query time (epoch ms): windows end here.")
    batch_cutoff: int | None = Field(description="Batch view covers event time < this.")
    batch_version: int | None
    speed_watermark: int | None = Field(description="Latest event time in the speed view.")
    features: dict[str, Any]
    statuses: dict[str, ValueStatus]


class WindowProvenance(BaseModel):
    """What one window of a group merged for the entity at ``as_of``."""

    group: str
    window: str
    batch_buckets: list[str] = Field(
        description="Batch view buckets read (bucket start in epoch ms, or 'collapsed')."
    )
    speed_tiles: list[int] = Field(description="Speed tiles merged (tile start, epoch ms).")
    correction_tiles: list[tuple[int, int]] = Field(
        description="Correction tiles of late events merged: (tile start ms, lake version)."
    )
    stale: bool = Field(description="Its values are served as stale_batch_view.")


class Provenance(GroupFeatures):
    """An entity's values in one group (or derived view) and where each came from."""

    batch: BatchViewInfo | None = Field(description="The serving batch view, if any.")
    speed_watermarks: dict[str, int] = Field(description="Per group, the speed watermark.")
    windows: list[WindowProvenance]


class FeatureInfo(BaseModel):
    name: str = Field(description="'group:feature', as used in requests.")
    function: str = Field(description="The aggregation, or 'derived' for a derived feature.")
    column: str | None
    window: str | None = Field(description="The window (null for a derived feature).")
    expression: str | None = Field(None, description="A derived feature's expression.")
    value_type: str = Field(description="JSON type of the value.")
    default: Any = Field(None, description="Value served instead of null (feature services).")


class FeatureServiceInfo(BaseModel):
    name: str
    description: str
    entity_key: str = Field(description="The entity's join keys, comma-separated.")
    join_keys: list[str] = Field(description="The join keys every entity must give.")
    request_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Request context fields its derived features need, with their types.",
    )
    features: list[FeatureInfo]


class Readiness(BaseModel):
    ready: bool
    problems: list[str] = Field(description="Why the server is not ready; empty when ready.")
    batch: BatchViewInfo | None
    batch_age_s: float | None = Field(description="Seconds since the batch view's cutoff.")
    speed_watermarks: dict[str, int]
    consumer_lag: dict[str, int] = Field(
        default_factory=dict,
        description="Records each consumer is behind, as 'consumer/topic' (lake-ingest, "
        "speed-job); past LFP_API_MAX_LAG_RECORDS the server is not ready.",
    )


# --- Feast-compatible --------------------------------------------------------------------


def _fraction(value: Any) -> Any:
    """A JSON number written with a fraction or exponent (an integer is an IntegerKey's)."""
    if isinstance(value, int):
        raise ValueError("an integer here must fit 64 bits")
    return value


#: An entity value: text, or an integer of 64 bits (what Feast's Int64 join keys hold); a
#: request data column of on-demand features may also hold numbers and booleans.
FeastEntityValue = Annotated[
    Annotated[StrictStr, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
    | IntegerKey
    | Annotated[StrictFloat, BeforeValidator(_fraction)]
    | StrictBool,
    Field(union_mode="left_to_right"),
]


class FeastRequest(BaseModel):
    """Feast's ``/get-online-features`` request body.

    As in Feast, ``feature_service`` wins when ``features`` is given too, and features of
    several entities may be asked together (``entities`` then holds each one's join keys).
    Unknown fields are ignored, as Feast's own server does, so newer Feast clients that
    send extra fields keep working.
    """

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["feature_service"],
                    "properties": {"feature_service": {"type": "string"}},
                },
                {
                    "required": ["features"],
                    "properties": {"features": {"type": "array", "minItems": 1}},
                },
            ],
            "examples": [
                {
                    "features": ["user_purchases:spend_30d", "user_browsing:events_5m"],
                    "entities": {"user_id": ["u1", "u2"]},
                },
                {"feature_service": "ranking_features", "entities": {"user_id": ["u1"]}},
            ],
        },
    )

    features: list[FeatureReference] | None = Field(None, fail_fast=True)
    feature_service: StrictStr | None = None
    entities: dict[str, Annotated[list[FeastEntityValue], FailFast()]] = Field(
        max_length=MAX_JOIN_KEYS,
        description="Join key -> entity values: one list per join key of the requested "
        "features' entities, all of the same length (the n-th values of each list name the "
        "n-th entity row). Values are converted to the join key's declared type. Request "
        "data of on-demand (derived) features comes as more columns, named as its fields.",
    )
    full_feature_names: StrictBool = Field(
        False, description="Name features 'group__feature' instead of 'feature' (true or false)."
    )
    include_feature_view_version_metadata: StrictBool = Field(
        False, description="Add metadata.feature_view_metadata: the feature groups read."
    )

    _few_join_keys = field_validator("entities", mode="before")(_few_join_keys)


class FeastColumn(BaseModel):
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str]


class FeastMetadata(BaseModel):
    feature_names: list[str]
    feature_view_metadata: list[dict[str, Any]] | None = None


class FeastResponse(BaseModel):
    """Feast's column-oriented response: one result per name in ``metadata.feature_names``."""

    metadata: FeastMetadata
    results: list[FeastColumn]
