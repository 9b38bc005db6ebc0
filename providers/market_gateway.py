"""Tencent Cloud market API gateway auth, shared by Xiaorui and Deepfinch (and their simulators).

Both vendors sell through the Tencent Cloud market, whose gateway authenticates every call before the
vendor sees it. The seeds' sample code (000_56fc09760ff8ebc1.txt, 001_ea7bf1fee9755f8a.txt) signs::

    signStr = "x-date: %s\\nx-source: %s" % (datetime, "market")
    sign    = base64(hmac_sha1(SecretKey, signStr))
    Authorization: hmac id="<SecretId>", algorithm="hmac-sha1", headers="x-date x-source", signature="<sign>"

with ``X-Date`` an RFC 1123 GMT date (``Mon, 19 Mar 2018 12:08:40 GMT``) and ``X-Source: market``.
Quirks: the curl samples in the same seeds show an older form (``headers = "date source"``, spaces around
``=``, the signature unquoted), so the verifier parses both and signs whatever headers are listed. The
samples turn TLS verification off; we never do (the client's ``verify`` is left alone).

Gateway refusals come back before the vendor is reached, as ``{"message": "..."}`` with HTTP 401
(no Authorization) or 403 (anything else wrong), per Tencent's API gateway documentation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Generator, Mapping
from email.utils import formatdate, parsedate_to_datetime

import httpx
from pydantic import SecretStr

from providers import reading
from providers.errors import ConfigError
from providers.reading import decode_json

SOURCE = "market"
SIGNED_HEADERS = ("x-date", "x-source")
ALGORITHM = "hmac-sha1"
# The gateway's own wording (sic), from Tencent's API gateway error table.
NO_AUTHORIZATION = "HMAC signature cannot be verified, a validate authorization header is required"
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]+))')


def http_date(now: float | None = None) -> str:
    """RFC 1123 date in GMT, independent of the locale (``strftime('%a')`` is not)."""
    return formatdate(time.time() if now is None else now, usegmt=True)


def string_to_sign(headers: Mapping[str, str], names: tuple[str, ...] = SIGNED_HEADERS) -> str:
    """``name: value`` per signed header, in the listed order, joined by ``\\n`` (names lowercase)."""
    return "\n".join(f"{name}: {headers[name]}" for name in names)


def signature(secret_key: str, date: str, source: str = SOURCE) -> str:
    """Base64 HMAC-SHA1 of ``x-date: <date>\\nx-source: <source>`` keyed with the SecretKey."""
    return _sign(secret_key, string_to_sign({"x-date": date, "x-source": source}))


def authorization(secret_id: str, secret_key: str, date: str, source: str = SOURCE) -> str:
    """The ``Authorization`` header value exactly as the seeds' sample code writes it."""
    sign = signature(secret_key, date, source)
    return f'hmac id="{secret_id}", algorithm="{ALGORITHM}", headers="x-date x-source", signature="{sign}"'


def _sign(secret_key: str, text: str) -> str:
    digest = hmac.new(secret_key.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class MarketGatewayAuth(httpx.Auth):
    """Adds ``X-Source``, ``X-Date`` and ``Authorization`` to every request (the body is not signed)."""

    def __init__(self, secret_id: str, secret_key: str, clock: Callable[[], float] = time.time) -> None:
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        date = http_date(self._clock())
        request.headers["X-Source"] = SOURCE
        request.headers["X-Date"] = date
        request.headers["Authorization"] = authorization(self._secret_id, self._secret_key, date)
        yield request

    @classmethod
    def from_secrets(cls, secret_id: SecretStr, secret_key: SecretStr) -> MarketGatewayAuth:
        """From a settings section's ``secret_id``/``secret_key``; the secrets stay out of every repr."""
        return cls(secret_id.get_secret_value(), secret_key.get_secret_value())


# -- the gateway's side (simulators) -----------------------------------------------------------------


class GatewayRefusal(Exception):
    """The gateway refused the call; ``status_code`` and ``message`` are what it answers."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"message": self.message}


def parse_authorization(value: str) -> dict[str, str]:
    """``hmac id="..", algorithm="..", headers="..", signature=".."`` → its fields (quotes optional)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "hmac":
        raise GatewayRefusal(403, "authorization headers is invalidate")
    return {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _PARAM.finditer(rest)}


def verify(headers: Mapping[str, str], secret_id: str, secret_key: str, max_skew_s: float) -> None:
    """Check a request's gateway auth as the gateway does; raise :class:`GatewayRefusal` if it fails.

    ``max_skew_s`` is how far (in seconds) the signed date may be from now, either way.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    if not lower.get("authorization"):
        raise GatewayRefusal(401, NO_AUTHORIZATION)
    fields = parse_authorization(lower["authorization"])
    if not fields.get("id") or not fields.get("signature"):
        raise GatewayRefusal(403, "id or signature missing")
    if fields.get("algorithm", "").lower() != ALGORITHM:
        raise GatewayRefusal(403, "HMAC algorithm is not supported")
    names = tuple(fields.get("headers", "").lower().split())
    date_header = next((n for n in names if n in ("x-date", "date")), None)
    if date_header is None:
        raise GatewayRefusal(403, "HMAC signature cannot be verified, a valid date header is required")
    for name in names:
        if name not in lower:
            raise GatewayRefusal(403, f"HMAC signature cannot be verified, a valid {name} header is required")
    _check_date(lower[date_header], max_skew_s)
    if not hmac.compare_digest(fields["id"], secret_id):
        raise GatewayRefusal(403, "HMAC id is invalid")
    if not hmac.compare_digest(_sign(secret_key, string_to_sign(lower, names)), fields["signature"]):
        raise GatewayRefusal(403, "HMAC signature does not match")


def _check_date(value: str, max_skew_s: float) -> None:
    try:
        signed_at = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        raise GatewayRefusal(403, "HMAC signature cannot be verified, the date header is invalid") from None
    if abs(signed_at - time.time()) > max_skew_s:
        raise GatewayRefusal(403, "HMAC signature cannot be verified, the date header is out of date")


# -- the client's side of a refusal ------------------------------------------------------------------


def gateway_error(provider: str, response: httpx.Response) -> ConfigError | None:
    """A refusal by the gateway itself (not the vendor): our SecretId/SecretKey or clock is wrong.

    The gateway answers ``{"message": ...}`` with 401 or 403; the vendors' own answers carry ``status``
    (Deepfinch uses 403 for its rate limit), so a body with ``status`` is left to the vendor's table.
    """
    if response.status_code not in (401, 403):
        return None
    try:
        body = decode_json(response.content)
    except ValueError:  # HTML, truncated, not UTF-8, nested too deep: not the gateway's JSON
        body = None
    if isinstance(body, dict) and "status" in body:
        return None
    if response.status_code == 403 and not (isinstance(body, dict) and "message" in body):
        return None
    text = reading.text(body.get("message")) if isinstance(body, dict) else response.text[:200]
    return ConfigError(
        f"{provider}: API gateway refused the call (HTTP {response.status_code}): {text}",
        provider=provider,
        code=f"GATEWAY_{response.status_code}",
        text=text,
        raw=body,
    )
