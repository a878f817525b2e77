"""Fast JSON responses for the hot paths (orjson, no per-response model validation).

The response models in :mod:`serving_layer.models` still define the OpenAPI schema,
and the integration tests validate real responses against them.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")
