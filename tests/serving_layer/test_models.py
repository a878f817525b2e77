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
