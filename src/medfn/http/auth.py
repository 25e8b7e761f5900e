"""A bearer token for `medfn serve --require-token`: the local stand-in for the authorizer that
API Gateway puts in front of the functions in AWS (IAM or a JWT issuer; docs/deploy.md).

Health routes stay open, as load balancers probe them; every other route needs
`Authorization: Bearer <token>`, compared in constant time; a miss is a 401.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from medfn.http.responses import error

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


class BearerToken:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        refusal = error(
            401, "this server requires Authorization: Bearer <token>", headers={"www-authenticate": "Bearer"}
        )
        await refusal(scope, receive, send)
