"""OIDC sign-in through a real OpenID provider (node-oidc-provider, tests/web/oidc): the sign-in page
offers it, the provider's own pages sign the user in, the gateway's callback hands AIMA's session to
the workspace, and what can go wrong (no AIMA role, a forged callback, a replayed hand-over) ends on
the sign-in page with the reason, audited. The code flow itself: docs/security.md."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web import support
from tests.web.oidc_provider import OidcProvider
from tests.web.support import Server, free_port

CALLBACK = "/api/v1/auth/oidc/callback"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    folder = tmp_path_factory.mktemp("oidc-provider")
    gateway_port = free_port()
    started = OidcProvider.start(free_port(), f"http://127.0.0.1:{gateway_port}{CALLBACK}", folder / "op.log")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def server(provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The gateway, configured to sign in through ``provider`` (overrides conftest's ``server``)."""
    if not support.INDEX.is_file():
        pytest.fail(support.NOT_BUILT)
    started = Server.start(
        tmp_path_factory.mktemp("web-oidc"),
        port=urlsplit(provider.redirect_uri).port,  # where the provider's registered callback points
        env=provider.gateway_env(),
    )
    try:
        yield started
    finally:
        started.stop()


def _sign_in_at_provider(page: Page, login: str) -> None:
    """The provider's development pages: any login name with any password, then consent."""
    page.get_by_placeholder("Enter any login").fill(login)
    page.get_by_placeholder("and password").fill("anything")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def _logins(server: Server, chain: str | None = None) -> list[dict[str, Any]]:
    """The OIDC sign-ins in the tenant's audit chain (refused ones, with no user yet, are in the
    ``anonymous`` chain, as refused password sign-ins are)."""
    params: dict[str, Any] = {"action": "auth.login", "limit": 50} | ({"chain": chain} if chain else {})
    answer = server.api("GET", "/audit", params=params)
    assert answer.status_code == 200, answer.text
    return [r for r in answer.json()["records"] if (r.get("detail") or {}).get("method") == "oidc"]


def test_signing_in_through_the_provider_lands_on_the_cases_as_that_user(
    page: Page, server: Server, provider: OidcProvider
) -> None:
    page.route(re.compile(r"https?://fonts\.googleapis\.com/.*"), lambda route: route.abort())
    page.goto("/login")
    start = page.get_by_role("link", name="Sign in with Test Identity Provider")
    expect(start).to_be_visible()
    start.click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(provider.issuer)}/interaction/"))
    _sign_in_at_provider(page, "olga")

    expect(page).to_have_url(re.compile(r"/cases$"))
    expect(page.get_by_text("Signed in as olga (user)")).to_be_visible()
    expect(page.get_by_role("heading", name="Cases", exact=True)).to_be_visible()
    # the session works for the API and is AIMA's own (refreshable), made from the provider's token
    me = page.evaluate(
        """async () => {
            const refresh = sessionStorage.getItem("aima.refresh_token");
            const pair = await (await fetch("/api/v1/auth/refresh", {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({refresh_token: refresh})})).json();
            sessionStorage.setItem("aima.refresh_token", pair.refresh_token);
            const me = await fetch("/api/v1/me", {headers: {Authorization: `Bearer ${pair.access_token}`}});
            return me.json();
        }"""
    )
    assert (me["username"], me["role"]) == ("olga", "user")
    allowed = [r for r in _logins(server) if r["outcome"] == "allowed" and r["actor"] == me["user_id"]]
    assert len(allowed) == 1, allowed
    assert allowed[0]["detail"]["issuer"] == provider.issuer


def test_a_user_the_provider_gives_no_aima_role_is_refused_with_the_reason(
    page: Page, server: Server
) -> None:
    page.route(re.compile(r"https?://fonts\.googleapis\.com/.*"), lambda route: route.abort())
    before = len(_logins(server, "anonymous"))
    page.goto("/login")
    page.get_by_role("link", name="Sign in with Test Identity Provider").click()
    _sign_in_at_provider(page, "norole-nick")

    expect(page).to_have_url(re.compile(r"/login\?sso_error="))
    expect(page.get_by_role("alert")).to_have_text(
        "Sign-in failed: the issuer's token is not accepted: no AIMA role"
    )
    expect(page.get_by_label("Username")).to_be_visible()
    denied = _logins(server, "anonymous")
    assert len(denied) == before + 1
    assert denied[0]["outcome"] == "denied"
    assert denied[0]["detail"]["reason"] == "the issuer's token is not accepted: no AIMA role"


def test_a_forged_callback_and_a_replayed_hand_over_are_refused(
    server: Server, provider: OidcProvider
) -> None:
    """Over plain HTTP: a callback with no sign-in under way, one whose state does not match, and the
    session cookie used twice (the second time its refresh token is spent: 401)."""
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=10) as client:
        answer = client.get(CALLBACK, params={"code": "made-up", "state": "made-up"})
        assert answer.status_code == 303
        assert parse_qs(urlsplit(answer.headers["location"]).query)["sso_error"] == [
            "no sign-in is under way in this browser (or it took over 10 minutes)"
        ]

        start = client.get("/api/v1/auth/oidc/login", params={"return_to": "https://evil.example/"})
        assert start.status_code == 302
        assert start.headers["location"].startswith(provider.issuer)
        wrong_state = client.get(CALLBACK, params={"code": "made-up", "state": "not-the-one"})
        assert parse_qs(urlsplit(wrong_state.headers["location"]).query)["sso_error"] == [
            "the sign-in's state does not match"
        ]

        # a whole sign-in over HTTP, to hold the hand-over cookie
        start = client.get("/api/v1/auth/oidc/login", params={"return_to": "https://evil.example/"})
        landing = _through_provider(start.headers["location"], provider, "olga")
        assert landing.startswith(f"{server.url}{CALLBACK}?")
        callback = client.get(landing)
        assert callback.status_code == 303
        assert callback.headers["location"] == "/signed-in?return_to=%2F"  # never another origin
        cookie = client.cookies.get("aima_oidc_session")
        assert cookie
        first = client.post("/api/v1/auth/oidc/session")
        assert first.status_code == 200, first.text
        assert "aima_oidc_session" not in client.cookies
        client.cookies.set("aima_oidc_session", cookie, domain="127.0.0.1", path="/api/v1/auth/oidc/session")
        replay = client.post("/api/v1/auth/oidc/session")
        assert replay.status_code == 401
        assert replay.headers["content-type"].startswith("application/problem+json")
        assert replay.json()["detail"].startswith("Sign-in refused: "), replay.json()  # spent, not absent


def _through_provider(url: str, provider: OidcProvider, login: str) -> str:
    """Follow the provider's pages as a browser would (its cookies, its forms) until it sends the
    browser back; the URL it sends it to."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        answer = browser.get(url)
        for _ in range(10):
            if answer.status_code in (302, 303):
                target = urljoin(str(answer.url), answer.headers["location"])
                if not target.startswith(provider.issuer):
                    return target
                answer = browser.get(target)
                continue
            assert answer.status_code == 200, answer.text
            action = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
            assert action is not None, answer.text
            prompt = "login" if 'value="login"' in answer.text else "consent"
            form = {"prompt": prompt} | ({"login": login, "password": "x"} if prompt == "login" else {})
            answer = browser.post(urljoin(str(answer.url), action.group(1)), data=form)
    raise AssertionError("the provider never sent the browser back")
