"""JSON request bodies of the feature endpoints, parsed and validated in one pass.

FastAPI's generic body path parses the Content-Type with ``email.message``, the JSON
with the stdlib into dicts, then validates those dicts and resolves the endpoint's
dependencies: on a single-entity request that costs more than the Redis read. The
feature endpoints take the raw request instead and hand its bytes to pydantic-core's
``model_validate_json``; errors come out exactly as FastAPI's would (the same
``RequestValidationError``, locations under ``body``), and the OpenAPI schema still
documents the model as the request body.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as a route's required JSON body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


async def parse_body(request: Request, model: type[Model]) -> Model:
    """The request's JSON body as ``model``: 415 unless it is declared JSON (as FastAPI's
    strict content type, against cross-site form posts), 422 naming each problem."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            415,
            f"the body must be JSON sent with 'Content-Type: application/json' "
            f"(got {media_type or 'no Content-Type'})",
        )
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError(
            [
                {**problem, "loc": ("body", *problem["loc"])}
                for problem in error.errors(include_url=False, include_input=False)
            ]
        ) from None
