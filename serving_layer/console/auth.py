"""The console's login: when LFP_API_TOKEN is set, every console page needs it.

A person types the token into a form posted to ``/console/login`` (never in a URL); the
API compares it in constant time and answers with a session cookie: ``HttpOnly`` (no
script reads it), ``SameSite=Strict`` (no other site's page sends it, so its forms cannot
act for the operator), ``Secure`` when the request came over https, scoped to
``/console``. The cookie holds no token: its expiry and an HMAC of that expiry keyed by the
token, so changing the token ends every session and a cookie past its expiry is refused.
A script may send ``Authorization: Bearer <token>`` instead, as to the API.

Without a token set the console is open, like the API.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from typing import Annotated
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from serving_layer.console.render import page

COOKIE = "lfp_console_session"
COOKIE_PATH = "/console"
#: How long a login lasts.
SESSION_S = 12 * 3600
#: A login form's body is one token and one path: anything longer is refused unread.
MAX_FORM_BYTES = 8192
#: Wrong tokens one client address may post per window before it must wait (guessing).
LOGIN_FAILURES = 10
LOGIN_WINDOW_S = 60.0


class LoginThrottle:
    """Failed logins per client address over the last window: past the limit, the address
    waits until its oldest failure ages out (answered 429, the token not even compared).
    Bounded: the addresses seen least recently are forgotten past ``addresses``. Behind a
    proxy every client shares its address, so a guesser there slows everyone's login."""

    def __init__(
        self,
        limit: int = LOGIN_FAILURES,
        window_s: float = LOGIN_WINDOW_S,
        addresses: int = 10_000,
    ) -> None:
        self.limit, self.window_s, self.addresses = limit, window_s, addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, address: str, now: float) -> float:
        """Seconds this address must wait before its next try (0: it may try now)."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window_s - now

    def failed(self, address: str, now: float) -> None:
        failures = self._failures.pop(address, None) or deque(maxlen=self.limit)
        failures.append(now)
        self._failures[address] = failures  # now the most recent
        while len(self._failures) > self.addresses:
            self._failures.popitem(last=False)


class LoginRequired(Exception):
    """Raised by :func:`require_session`: the app's handler sends the browser to the login
    form, which returns it to ``next_path`` once logged in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def session_value(token: str, expires_s: int) -> str:
    """The cookie of a session ending at ``expires_s`` (epoch seconds)."""
    mac = hmac.new(token.encode(), f"lfp-console-session:{expires_s}".encode(), hashlib.sha256)
    return f"{expires_s}.{mac.hexdigest()}"


def valid_session(token: str, value: str, now_s: float | None = None) -> bool:
    """Whether ``value`` is an unexpired session cookie made with ``token``."""
    expires, _, _ = value.partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) <= (time.time() if now_s is None else now_s):
        return False
    return hmac.compare_digest(session_value(token, int(expires)).encode(), value.encode())


def _token(request: Request) -> str | None:
    secret = request.app.state.settings.api_token
    return None if secret is None else secret.get_secret_value()


def logged_in(request: Request) -> bool:
    """The request may see console pages: no token is set, or it carries a valid session
    cookie or the bearer token."""
    token = _token(request)
    if token is None:
        return True
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and valid_session(token, cookie):
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.encode(), token.encode())


async def require_session(request: Request) -> None:
    """Dependency of every console page: :class:`LoginRequired` unless :func:`logged_in`."""
    if not logged_in(request):
        wanted = request.url.path
        if request.url.query:
            wanted += f"?{request.url.query}"
        raise LoginRequired(wanted)


LoggedIn = Annotated[None, Depends(require_session)]


def login_redirect(request: Request, error: LoginRequired) -> Response:
    return RedirectResponse(
        f"/console/login?next={quote(safe_next(error.next_path), safe='')}", status_code=303
    )


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a console path of this site, never another site
    (``//host``, ``/console\\..``, a scheme) nor a header-splitting character."""
    if (
        not path
        or not (path == COOKIE_PATH or path.startswith((f"{COOKIE_PATH}/", f"{COOKIE_PATH}?")))
        or "\\" in path
        or any(ord(c) < 32 or ord(c) == 127 for c in path)
    ):
        return COOKIE_PATH
    return path


router = APIRouter(include_in_schema=False)


@router.get("/console/login")
async def login_form(
    request: Request, next_path: Annotated[str, Query(alias="next")] = COOKIE_PATH
) -> Response:
    """The login form (or, without a token set, a note that the console is open)."""
    return page(request, "login.html", {"next": safe_next(next_path), "error": None})


@router.post("/console/login")
async def login(request: Request) -> Response:
    """Checks the posted token (constant time) and starts a session; a wrong or missing
    one is a 401 page that says so."""
    token = _token(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return page(
                request, "login.html", {"next": COOKIE_PATH, "error": "form too large"}, 413
            )
    form = dict(parse_qsl(body.decode("utf-8", "replace"), max_num_fields=4))
    next_path = safe_next(form.get("next"))
    if token is None:
        return RedirectResponse(next_path, status_code=303)
    throttle: LoginThrottle = request.app.state.console_logins
    address, now = request.client.host if request.client else "", time.monotonic()
    if wait_s := throttle.wait_s(address, now):
        seconds = math.ceil(wait_s)
        error = f"too many wrong tokens from your address: try again in {seconds} s"
        response = page(request, "login.html", {"next": next_path, "error": error}, 429)
        response.headers["Retry-After"] = str(seconds)
        return response
    given = form.get("token", "")
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        throttle.failed(address, now)
        error = "wrong token" if given else "no token given"
        return page(request, "login.html", {"next": next_path, "error": error}, 401)
    expires = int(time.time()) + SESSION_S
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        COOKIE,
        session_value(token, expires),
        max_age=SESSION_S,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    """Ends the session in this browser (the cookie is deleted)."""
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response
