"""Who may call ``/v1``: bearer API keys from ``api.keys`` (``Authorization: Bearer <key>``).

The key is checked by the route itself (:func:`guarded_route`) before FastAPI reads the body, so a caller
without a valid key cannot make us read, parse or spool an upload. Every configured key is compared,
in constant time, whatever matched (SHA-256 digests, so lengths leak nothing either). A key is never
logged or echoed; callers are named by the key's ``name``.

- no ``api.keys`` at all: 503, saying to configure them (the API is off until then);
- no bearer token, or an unknown one: 401 with ``WWW-Authenticate: Bearer``;
- a key not allowed to do this (an ``otp_only`` key sending another kind, or touching campaigns): 403.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import JSONResponse, Response

from config.api import ApiKey
from worker.http.problems import from_pydantic

NO_KEYS = (
    "the /v1 API is off: no API keys are configured; add [[api.keys]] (name, key) to the config file "
    'or set SMSD_API__KEYS=\'[{"name": "...", "key": "..."}]\''
)
CALLER = "smsd.caller"  # the request scope's entry for the authenticated caller
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `api.keys`: `Authorization: Bearer <key>`.",
)


@dataclass(frozen=True)
class Caller:
    """Whoever presented a valid key: the key's name (never the key) and what it may do."""

    name: str
    otp_only: bool

    def require_full(self, what: str) -> None:
        """403 unless this key may do more than send OTPs."""
        if self.otp_only:
            raise HTTPException(403, f"API key {self.name!r} may only send OTPs (kind=otp), not {what}")


class Keyring:
    """The configured keys, as digests."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = [(_digest(key.key.get_secret_value()), Caller(key.name, key.otp_only)) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def caller(self, authorization: str | None) -> Caller:
        """The caller this ``Authorization`` header proves, or an HTTP error (see the module docstring)."""
        if not self._keys:
            raise HTTPException(503, NO_KEYS)
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401, "missing API key: send Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"}
            )
        given = _digest(token)
        found = None
        for digest, caller in self._keys:  # no early exit: the same work whichever key matches
            if hmac.compare_digest(given, digest):
                found = caller
        if found is None:
            raise HTTPException(401, "unknown API key", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return found


def describe_keys(keys: Sequence[ApiKey], base: str) -> str:
    """What ``smsdispatch api`` says at start about ``/v1``: off (no keys), or the keys' names."""
    if not keys:
        return f"/v1 API: OFF, {NO_KEYS}"
    names = ", ".join(key.name + (" (OTP only)" if key.otp_only else "") for key in keys)
    return f"/v1 API: {base}/v1 (OpenAPI: {base}/docs), {len(keys)} API key(s): {names}"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def guarded_route(keyring: Keyring, full_only: str = "") -> type[APIRoute]:
    """The route class of ``/v1``: the key is checked before the body is read (with ``full_only``, the
    routes' subject, an OTP-only key is refused then too), and validation errors name their field
    (``worker/http/problems.py``) without echoing what was sent."""

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                caller = keyring.caller(request.headers.get("authorization"))
                if full_only:
                    caller.require_full(full_only)
                request.scope[CALLER] = caller
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    return JSONResponse({"detail": from_pydantic(exc.errors())}, status_code=422)

            return guarded

    return GuardedRoute


def _caller(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Caller:
    """The caller :func:`guarded_route` checked (``Security(bearer)`` puts the scheme in OpenAPI)."""
    caller: Caller = request.scope[CALLER]
    return caller


AnyCaller = Annotated[Caller, Depends(_caller)]
