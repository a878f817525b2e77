"""Request safety: bearer-token auth for the feature endpoints, a request body size limit."""

from __future__ import annotations

import secrets
from typing import Annotated

import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_bearer = HTTPBearer(auto_error=False, description="Required when the server sets LFP_API_TOKEN.")


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Checks ``Authorization: Bearer <token>`` (installed only when a token is set)."""
    expected = request.app.state.settings.api_token
    assert expected is not None
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


class BodySizeLimit:
    """ASGI middleware: a body over ``max_bytes`` gets a JSON 413 naming the limit.

    A declared Content-Length is checked before the app runs, with no per-request
    wrapping; only a body of unknown length (chunked) is counted as it arrives, and the
    413 is raised where the app reads it (FastAPI passes HTTPExceptions through).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = (
            f"request body over {max_bytes} bytes (LFP_API_MAX_BODY_BYTES); "
            "send fewer entities per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if int(value) > self.max_bytes:
                    await self._reject(send)
                else:
                    await self.app(scope, receive, send)
                return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self.detail)
            return message

        await self.app(scope, counted_receive, send)

    async def _reject(self, send: Send) -> None:
        body = orjson.dumps({"detail": self.detail})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
