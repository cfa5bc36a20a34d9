"""A loopback proxy that adds a bearer token to every request, so the MCP conformance suite (which sends none)
exercises the real fhirgate server with authentication on. Test tooling only: never expose it.

    python tools/conformance/token_proxy.py --listen 127.0.0.1:9001 --upstream http://127.0.0.1:9000 --token-file T
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


def build_app(upstream: str, token: str) -> Starlette:
    """Forward every request unchanged (Host and Origin included) plus `Authorization: Bearer <token>`."""
    client = httpx.AsyncClient(base_url=upstream, timeout=60)

    async def forward(request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        headers.append(("authorization", f"Bearer {token}"))
        upstream_request = client.build_request(
            request.method,
            request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            headers=headers,
            content=await request.body(),
        )
        reply = await client.send(upstream_request)
        out_headers = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(reply.content, status_code=reply.status_code, headers=out_headers)

    methods = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:9001")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--token-file", required=True)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    token = Path(args.token_file).read_text(encoding="utf-8").strip()
    uvicorn.run(build_app(args.upstream, token), host=host, port=int(port), log_level="warning")


if __name__ == "__main__":
    main()
