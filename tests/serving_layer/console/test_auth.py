"""The console's login when LFP_API_TOKEN is set: every page needs it; a posted token
(compared in constant time) starts a session cookie flagged HttpOnly and SameSite=Strict
(Secure over https); a wrong token is a 401 page; logout ends the session; no token ever
travels in a URL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving_layer.app import create_app
from serving_layer.console.auth import (
    COOKIE,
    LOGIN_FAILURES,
    LOGIN_WINDOW_S,
    LoginThrottle,
    safe_next,
    session_value,
    valid_session,
)
from tests.serving_layer.console.conftest import console_settings

TOKEN = "s3cret-console-token-of-this-test"
PAGES = [
    "/console",
    "/console/freshness",
    "/console/runs",
    "/console/runs/abc",
    "/console/consistency",
    "/console/dead-letters",
    "/console/lookup",
    "/console/drift",
    "/console/features/user_activity/event_count_1h",
]


@pytest.fixture
def guarded(redis_process, tmp_path: Path) -> Iterator[TestClient]:
    settings = console_settings(redis_process.port, tmp_path, api_token=TOKEN)
    with TestClient(create_app(settings), follow_redirects=False) as api:
        yield api


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_stranger_to_the_login_form(guarded, path):
    response = guarded.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login?next=%2Fconsole")
    form = guarded.get(response.headers["location"])
    assert form.status_code == 200
    assert '<form method="post" action="/console/login">' in form.text
    assert 'type="password"' in form.text


def test_a_wrong_token_is_a_401_page_that_says_so(guarded):
    wrong = guarded.post("/console/login", data={"token": "guess", "next": "/console/runs"})
    assert wrong.status_code == 401
    assert "Not logged in: wrong token" in wrong.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")
    empty = guarded.post("/console/login", data={"token": ""})
    assert empty.status_code == 401 and "no token given" in empty.text
    assert guarded.get("/console/runs").status_code == 303


def test_guessing_tokens_is_slowed_to_a_few_tries_a_minute_per_address(guarded):
    for _ in range(LOGIN_FAILURES):
        assert guarded.post("/console/login", data={"token": "guess"}).status_code == 401
    held = guarded.post("/console/login", data={"token": TOKEN})  # even the right one
    assert held.status_code == 429 and COOKIE not in held.headers.get("set-cookie", "")
    assert 0 < int(held.headers["retry-after"]) <= LOGIN_WINDOW_S
    assert "too many wrong tokens from your address: try again in" in held.text


def test_the_throttle_lets_an_address_try_again_as_its_failures_age_out():
    throttle = LoginThrottle(limit=3, window_s=60.0, addresses=2)
    for at in (0.0, 10.0, 20.0):
        assert throttle.wait_s("a", at) == 0
        throttle.failed("a", at)
    assert throttle.wait_s("a", 30.0) == 30.0  # until the first failure is a minute old
    assert throttle.wait_s("a", 60.0) == 0  # one aged out: one more try
    assert throttle.wait_s("b", 30.0) == 0  # another address is not held
    throttle.failed("b", 30.0)
    throttle.failed("c", 31.0)  # past two addresses the least recent is forgotten
    assert throttle.wait_s("a", 40.0) == 0


def test_logging_in_sets_a_strict_http_only_cookie_and_logging_out_ends_it(guarded):
    response = guarded.post("/console/login", data={"token": TOKEN, "next": "/console/runs?x=1"})
    assert response.status_code == 303
    assert response.headers["location"] == "/console/runs?x=1"
    assert TOKEN not in response.headers["location"]
    cookie = response.headers["set-cookie"]
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= flags
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    assert TOKEN not in cookie  # the cookie holds a MAC of its expiry, not the token
    for path in PAGES[:3]:
        page = guarded.get(path)
        assert page.status_code == 200, path
        assert TOKEN not in page.text
        assert '<form class="logout" method="post" action="/console/logout">' in page.text
    out = guarded.post("/console/logout")
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert (
        "Max-Age=0" in out.headers["set-cookie"] or "expires=" in out.headers["set-cookie"].lower()
    )
    assert guarded.get("/console").status_code == 303


def test_over_https_the_cookie_is_secure(redis_process, tmp_path):
    settings = console_settings(redis_process.port, tmp_path, api_token=TOKEN)
    with TestClient(
        create_app(settings), base_url="https://console.test", follow_redirects=False
    ) as api:
        response = api.post("/console/login", data={"token": TOKEN})
        flags = {p.strip().lower() for p in response.headers["set-cookie"].split(";")}
        assert "secure" in flags


def test_a_forged_expired_or_other_tokens_cookie_is_refused(guarded):
    future = int(time.time()) + 3600
    for value in (
        session_value("another-token", future),
        session_value(TOKEN, int(time.time()) - 1),
        f"{future}.{'0' * 64}",
        "garbage",
    ):
        guarded.cookies.set(COOKIE, value, path="/console")
        assert guarded.get("/console").status_code == 303, value
        guarded.cookies.clear()
    guarded.cookies.set(COOKIE, session_value(TOKEN, future), path="/console")
    assert guarded.get("/console").status_code == 200


def test_the_api_bearer_token_opens_the_console_too(guarded):
    assert guarded.get("/console", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert guarded.get("/console", headers={"Authorization": "Bearer nope"}).status_code == 303


def test_static_files_and_plotly_need_no_login(guarded):
    from serving_layer.console.render import PLOTLY_PATH

    assert guarded.get("/console/static/console.css").status_code == 200
    assert guarded.get(PLOTLY_PATH).status_code == 200


def test_without_a_token_the_console_is_open_and_says_so(client):
    assert client.get("/console/runs").status_code == 200
    login = client.get("/console/login").text
    assert "No API token is set (LFP_API_TOKEN): the console is open" in login


def test_after_login_only_console_paths_are_followed():
    assert safe_next("/console/runs?a=b") == "/console/runs?a=b"
    assert safe_next("/console") == "/console"
    for hostile in (
        "//evil.example/console",
        "https://evil.example/",
        "/consolex",
        "/v1/features",
        "/console\\@evil",
        "/console/\r\nSet-Cookie: x=1",
        "",
        None,
    ):
        assert safe_next(hostile) == "/console", hostile


def test_session_values_check_their_expiry_and_key():
    now = time.time()
    value = session_value(TOKEN, int(now) + 10)
    assert valid_session(TOKEN, value, now)
    assert not valid_session(TOKEN, value, now + 11)
    assert not valid_session(TOKEN + "x", value, now)
    assert not valid_session(TOKEN, value[:-1] + ("0" if value[-1] != "0" else "1"), now)
