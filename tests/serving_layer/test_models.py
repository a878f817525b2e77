"""Request models reject what the API cannot serve, with a 422 rather than a 500."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from serving_layer.models import FeastRequest


def _feast(**fields) -> dict:
    return {"features": ["user_activity:event_count_1h"], "entities": {"user_id": ["u1"]}} | fields


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_integer_entity_values_are_64_bit(value: int) -> None:
    body = _feast(entities={"user_id": [value]})
    if -(2**63) <= value < 2**63:
        assert FeastRequest.model_validate(body).entities["user_id"] == [value]
    else:
        with pytest.raises(ValidationError, match=r"less than or equal|greater than or equal"):
            FeastRequest.model_validate(body)


@pytest.mark.parametrize("flag", [0, 1, "yes", "true", None])
def test_full_feature_names_takes_only_json_booleans(flag) -> None:
    with pytest.raises(ValidationError, match="valid boolean"):
        FeastRequest.model_validate(_feast(full_feature_names=flag))
    assert FeastRequest.model_validate(_feast(full_feature_names=True)).full_feature_names


def _openapi(**settings) -> dict:
    from feature_core.settings import Settings
    from serving_layer.app import create_app

    return create_app(
        Settings(_env_file=None, feature_repo="demo.feature_repo", **settings)
    ).openapi()


def test_every_error_is_documented_with_the_body_the_handlers_send() -> None:
    schema = _openapi(api_token="t0ken")
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    features = schema["paths"]["/v1/features"]["post"]["responses"]
    assert {"401", "404", "413", "415", "422", "503"} <= set(features)
    for operations in schema["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and operation.get("tags") != ["ops"]:
                    assert response["content"]["application/json"]["schema"] == error, status
    # Without a token there is no 401 to document.
    assert "401" not in _openapi()["paths"]["/v1/features"]["post"]["responses"]


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "feature_service": st.one_of(st.none(), st.just("user_features")),
            "features": st.one_of(
                st.none(), st.just([]), st.just(["user_activity:event_count_1h"])
            ),
        },
    )
)
def test_the_schema_states_the_one_selection_rule_as_the_api_applies_it(selection) -> None:
    """Each request schema accepts exactly the selections its endpoint serves: exactly one
    of the two for ``/v1``; for Feast's shape, a service (which wins) or a feature list."""
    import jsonschema_rs

    from feature_core.definitions import FeatureRepo
    from serving_layer.feast import requested_features
    from serving_layer.models import FeaturesRequest
    from serving_layer.vectors import RequestError, select

    repo = FeatureRepo.from_module("demo.feature_repo")
    features = selection.get("features")
    try:
        select(repo, selection.get("feature_service"), tuple(features) if features else None)
        served = True
    except RequestError:
        served = False
    v1 = {**selection, "entities": ["u1"]}
    assert jsonschema_rs.validator_for(FeaturesRequest.model_json_schema()).is_valid(v1) == served

    feast = {**selection, "entities": {"user_id": ["u1"]}}
    try:
        requested_features(repo, FeastRequest.model_validate(feast))
        served = True
    except RequestError:
        served = False
    assert jsonschema_rs.validator_for(FeastRequest.model_json_schema()).is_valid(feast) == served
