"""The page's sign-in (``web/auth.js``) in headless Chromium: the authorization-code flow with PKCE against
a stand-in of the user pool's two OAuth endpoints, which checks what Cognito's pages document and RFC
7636 requires (``response_type=code``, the client, the registered callback, ``S256``, a verifier whose
SHA-256 is the challenge, a code used once), and a stand-in API that records the ``Authorization``
header of each call. moto serves neither the hosted pages nor ``/oauth2/token``, so the stand-in is
ours; the page, its ``config.js`` shape and the headers are the deployed ones."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tests.support import serve

try:
    from playwright.sync_api import Browser, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("playwright is not installed", allow_module_level=True)

CHROMIUM = Path(os.environ.get("IMAGEGEN_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():  # pragma: no cover - depends on the machine
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
CLIENT_ID = "page-client-id"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
expect.set_options(timeout=20_000)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _id_token(sub: str, email: str) -> str:
    """A token shaped like Cognito's ID token (its signature is not checked by the page)."""
    header = _b64url(json.dumps({"alg": "RS256", "kid": "k"}).encode())
    claims = _b64url(json.dumps({"sub": sub, "email": email, "token_use": "id", "aud": CLIENT_ID}).encode())
    return f"{header}.{claims}.{_b64url(b'signature')}"


class StandIn:
    """The user pool's /oauth2/authorize and /oauth2/token and /logout, and the API, over one origin."""

    def __init__(self) -> None:
        self.base = ""
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.api_calls: list[tuple[str, str | None]] = []
        self.id_token = _id_token("0f1e2d3c-aaaa-bbbb-cccc-444455556666", "ana@example.com")

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/config.js")
        def config_js() -> Response:
            config = {
                "apiUrl": f"{self.base}/api/",
                "apiKey": None,
                "apiKeyRequired": False,
                "auth": {
                    "kind": "cognito",
                    "domain": f"{self.base}/idp",
                    "clientId": CLIENT_ID,
                    "scope": "openid email",
                },
            }
            return Response(f"window.IMAGEGEN_CONFIG = {json.dumps(config)};\n", media_type="text/javascript")

        @app.get("/idp/oauth2/authorize")
        def authorize(request: Request) -> Response:
            query = dict(request.query_params)
            problems = [
                name
                for name, ok in {
                    "response_type": query.get("response_type") == "code",
                    "client_id": query.get("client_id") == CLIENT_ID,
                    "redirect_uri": query.get("redirect_uri") == f"{self.base}/",
                    "code_challenge_method": query.get("code_challenge_method") == "S256",
                    "code_challenge": len(query.get("code_challenge", "")) == 43,
                    "scope": query.get("scope") == "openid email",
                    "state": bool(query.get("state")),
                }.items()
                if not ok
            ]
            if problems:
                raise HTTPException(400, f"invalid_request: {problems}")
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"challenge": query["code_challenge"], "redirect_uri": query["redirect_uri"]}
            back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
            return RedirectResponse(back, status_code=302)

        @app.post("/idp/oauth2/token")
        async def token(request: Request) -> JSONResponse:
            if request.headers.get("content-type") != "application/x-www-form-urlencoded":
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
            grant_type, client_id = form.get("grant_type", ""), form.get("client_id", "")
            code, redirect_uri = form.get("code", ""), form.get("redirect_uri", "")
            code_verifier, refresh_token = form.get("code_verifier", ""), form.get("refresh_token", "")
            self.token_requests.append({"grant_type": grant_type, "client_id": client_id})
            if client_id != CLIENT_ID:
                return JSONResponse({"error": "invalid_client"}, status_code=400)
            if grant_type == "authorization_code":
                issued = self.codes.pop(code, None)  # a code is used once
                challenge = _b64url(hashlib.sha256(code_verifier.encode()).digest())
                if (
                    issued is None
                    or issued["redirect_uri"] != redirect_uri
                    or issued["challenge"] != challenge
                ):
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
            elif grant_type != "refresh_token" or refresh_token != "refresh-1":
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(
                {
                    "id_token": self.id_token,
                    "access_token": "access-1",
                    "refresh_token": "refresh-1",
                    "expires_in": 3600,
                    "token_type": "Bearer",
                }
            )

        @app.get("/idp/logout")
        def logout(client_id: str, logout_uri: str) -> Response:
            assert client_id == CLIENT_ID
            return RedirectResponse(logout_uri, status_code=302)

        @app.api_route("/api/{path:path}", methods=["GET", "POST", "DELETE"])
        def api(path: str, request: Request) -> JSONResponse:
            self.api_calls.append((path, request.headers.get("authorization")))
            if path == "models":
                return JSONResponse({"default_model": "stable-image-core", "models": []})
            if path == "jobs":
                return JSONResponse({"jobs": [], "next_token": None})
            return JSONResponse({"error": "NotFound", "message": path}, status_code=404)

        app.mount("/", StaticFiles(directory=WEB_DIR, html=True))
        return app


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    stand = StandIn()
    with serve(stand.app()) as url:
        stand.base = url
        yield stand


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


def _page(browser: Browser) -> Any:
    context = browser.new_context()
    return context, context.new_page()


def test_sign_in_with_the_code_flow_and_pkce_then_every_call_carries_the_id_token(
    browser: Browser, stand_in: StandIn
) -> None:
    context, page = _page(browser)
    try:
        page.goto(f"{stand_in.base}/")
        button = page.locator("#auth .auth-button")
        expect(button).to_have_text("Sign in")
        expect(page.locator("#auth .auth-status")).to_contain_text("Sign in to generate images")
        page.wait_for_function("() => document.querySelector('#auth')")
        assert all(auth is None for _, auth in stand_in.api_calls)  # nobody signed in yet
        before = len(stand_in.api_calls)

        button.click()  # -> /idp/oauth2/authorize -> back with ?code&state -> the token exchange
        expect(page.locator("#auth .auth-status")).to_have_text("Signed in as ana@example.com")
        assert page.url == f"{stand_in.base}/"  # the code is gone from the address bar
        assert stand_in.token_requests == [{"grant_type": "authorization_code", "client_id": CLIENT_ID}]
        expect(page.locator("#auth .auth-button")).to_have_text("Sign out")
        page.wait_for_timeout(300)  # the first calls after sign-in (models, history)
        after = stand_in.api_calls[before:]
        assert after and all(auth == f"Bearer {stand_in.id_token}" for _, auth in after), after
        assert {"models", "jobs"} <= {path.split("?")[0] for path, _ in after}

        # tokens are kept for the tab: a reload calls the API signed in without another sign-in
        page.reload()
        expect(page.locator("#auth .auth-status")).to_have_text("Signed in as ana@example.com")
        assert len(stand_in.token_requests) == 1

        page.locator("#auth .auth-button").click()  # sign out -> /idp/logout -> back
        expect(page.locator("#auth .auth-button")).to_have_text("Sign in")
        signed_out = len(stand_in.api_calls)
        page.reload()
        expect(page.locator("#auth .auth-button")).to_have_text("Sign in")
        page.wait_for_timeout(300)
        assert all(auth is None for _, auth in stand_in.api_calls[signed_out:])
    finally:
        context.close()


def test_a_code_whose_state_does_not_match_is_not_exchanged(browser: Browser, stand_in: StandIn) -> None:
    context, page = _page(browser)
    try:
        page.goto(f"{stand_in.base}/?code=stolen-code&state=not-ours")
        expect(page.locator("#auth .auth-status")).to_contain_text("state did not match")
        assert stand_in.token_requests == []
        assert page.url == f"{stand_in.base}/"
    finally:
        context.close()


def test_a_refused_exchange_is_said_and_leaves_the_page_signed_out(
    browser: Browser, stand_in: StandIn
) -> None:
    """The stand-in refuses a verifier whose SHA-256 is not the challenge (RFC 7636, 4.6)."""
    context, page = _page(browser)
    try:
        page.goto(f"{stand_in.base}/")
        expect(page.locator("#auth .auth-button")).to_have_text("Sign in")
        # the verifier kept for the exchange is changed after the challenge was sent
        page.evaluate(
            """() => { const original = sessionStorage.setItem.bind(sessionStorage);
                 sessionStorage.setItem = (k, v) => original(k, k === 'imagegen.auth.pending'
                   ? JSON.stringify({...JSON.parse(v), verifier: 'x'.repeat(64)}) : v); }"""
        )
        page.locator("#auth .auth-button").click()
        expect(page.locator("#auth .auth-status")).to_contain_text("Sign-in failed: invalid_grant")
        expect(page.locator("#auth .auth-button")).to_have_text("Sign in")
    finally:
        context.close()


def test_an_expiring_id_token_is_renewed_with_the_refresh_token(browser: Browser, stand_in: StandIn) -> None:
    """Tokens kept for the tab whose ID token is about to expire: the next call first asks the token
    endpoint with grant_type=refresh_token, then carries the new ID token."""
    context, page = _page(browser)
    try:
        old = {"idToken": "old-token", "refreshToken": "refresh-1", "expiresAt": 0}
        page.add_init_script(f"sessionStorage.setItem('imagegen.auth.tokens', {json.dumps(json.dumps(old))})")
        page.goto(f"{stand_in.base}/")
        expect(page.locator("#auth .auth-button")).to_have_text("Sign out")
        page.wait_for_timeout(300)
        assert {"grant_type": "refresh_token", "client_id": CLIENT_ID} in stand_in.token_requests
        assert stand_in.api_calls and all(
            auth == f"Bearer {stand_in.id_token}" for _, auth in stand_in.api_calls
        )
    finally:
        context.close()
