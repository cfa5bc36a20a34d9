"""The MCP SDK adapter: verify_token -> AccessToken, and the Principal reachable from a request handler."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fhirgate.auth.devissuer import DevIssuer
from fhirgate.auth.tokens import (
    McpTokenVerifier,
    PrincipalAccessToken,
    TokenVerifier,
    current_principal,
    principal_from_access_token,
)

AUD = "http://127.0.0.1:8765/mcp"


@pytest.fixture
def dev(tmp_path: Path) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path)


async def test_verify_token_returns_access_token_with_principal(dev: DevIssuer) -> None:
    failures: list[str] = []
    adapter = McpTokenVerifier(TokenVerifier([dev.trusted_issuer()], AUD), on_failure=failures.append)
    token = dev.mint(scope="openid patient/*.rs", audience=AUD, patient="p1")
    access = await adapter.verify_token(token)
    assert isinstance(access, PrincipalAccessToken)
    assert access.resource == AUD
    assert access.subject == "dev-user"
    assert access.client_id == "fhirgate-dev"
    assert access.scopes == ["openid", "patient/*.rs"]
    assert access.claims == {"iss": dev.issuer}
    principal = principal_from_access_token(access)
    assert principal is not None
    assert principal.patient == "p1"
    # the Principal is never serialized with the token model
    assert "principal" not in access.model_dump()
    assert "ScopeSet" not in repr(access)
    assert failures == []


async def test_verify_token_refusal_reports_reason(dev: DevIssuer) -> None:
    failures: list[str] = []
    adapter = McpTokenVerifier(TokenVerifier([dev.trusted_issuer()], AUD), on_failure=failures.append)
    assert await adapter.verify_token("garbage") is None
    assert await adapter.verify_token(dev.mint(scope="user/*.rs", audience="http://other/mcp")) is None
    assert failures == ["token.malformed", "token.wrong_audience"]


def test_principal_from_plain_access_token_is_none() -> None:
    from mcp.server.auth.provider import AccessToken

    assert principal_from_access_token(AccessToken(token="t", client_id="c", scopes=[])) is None
    assert principal_from_access_token(None) is None
    assert current_principal() is None  # no request in progress


async def test_principal_reaches_the_handler_through_the_sdk_middleware(dev: DevIssuer) -> None:
    """The same middleware stack MCPServer installs: BearerAuthBackend + AuthContextMiddleware."""

    async def whoami(request: Request) -> JSONResponse:
        principal = current_principal()
        if principal is None:
            return JSONResponse({"principal": None}, status_code=401)
        return JSONResponse({"sub": principal.sub, "patient": principal.patient, "scopes": principal.scopes.raw})

    adapter = McpTokenVerifier(TokenVerifier([dev.trusted_issuer()], AUD))
    app = Starlette(
        routes=[Route("/mcp", whoami)],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerAuthBackend(adapter, resource_server_url=AnyHttpUrl(AUD)),
            ),
            Middleware(AuthContextMiddleware),
        ],
    )
    token = dev.mint(scope="launch/patient patient/Observation.rs", audience=AUD, patient="p42")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765") as client:
        ok = await client.get("/mcp", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert ok.json() == {"sub": "dev-user", "patient": "p42", "scopes": "launch/patient patient/Observation.rs"}
        anonymous = await client.get("/mcp")
        assert anonymous.status_code == 401
        forged = await client.get("/mcp", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
        assert forged.status_code == 401


async def test_blocking_verifier_runs_in_a_worker_thread(dev: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a JWKS URL issuer the verify call may block on the network, so it leaves the event loop."""
    import threading

    verifier = TokenVerifier([dev.trusted_issuer()], AUD)
    seen: list[str] = []
    original = verifier.verify

    def spy(token: str) -> object:
        seen.append(threading.current_thread().name)
        return original(token)

    monkeypatch.setattr(TokenVerifier, "may_block", property(lambda self: True))
    monkeypatch.setattr(verifier, "verify", spy)
    access = await McpTokenVerifier(verifier).verify_token(dev.mint(scope="user/*.rs", audience=AUD))
    assert access is not None
    assert seen
    assert seen[0] != threading.main_thread().name
