"""A sixth vendor plugged in from outside the package: ``SMSD_VENDOR_MODULES=tests.dummy_vendor``.

Everything a vendor needs, in one module and without editing a shared file: the settings section, the
adapter, a tiny simulator (``build``) and the descriptor (``VENDOR``). Its API, invented for the test:

``POST /dummy/v1/send`` with ``Authorization: Bearer <token>`` and a JSON body ``{"to": [phones],
"template": id, "params": [values], "ref": our id}``; at most 10 numbers a call. It answers
``{"code": 0, "results": [{"to", "ok": true, "id"} | {"to", "ok": false, "error": "BAD_NUMBER"}]}``
or ``{"code": N, "message"}`` with a code of :data:`CODES`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import Field, SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.sections import VendorSettings
from providers.base import (
    Capabilities,
    HttpCall,
    Provider,
    RecipientOutcome,
    SendRequest,
    SendResult,
    classify,
)
from providers.descriptor import VendorDescriptor
from providers.errors import (
    BalanceError,
    ConfigError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.reading import Unreadable

if TYPE_CHECKING:  # a vendor module must not import config.settings (nor the simulator) at import time
    from config.settings import Settings
    from providers.simulator.core import SimState

PATH = "/dummy/v1/send"
MAX_PHONES = 10
SUCCESS = "0"
BAD_NUMBER = "BAD_NUMBER"
CODES: Mapping[str, type[ProviderError]] = {
    "1": TransientError,  # busy
    "2": RateLimitedError,  # too many calls
    "3": RequestRejectedError,  # bad request
    "4": ConfigError,  # bad token
    "5": BalanceError,  # no credit
}
MESSAGES = {"1": "busy", "2": "too many calls", "3": "bad request", "4": "bad token", "5": "no credit"}


class DummySettings(VendorSettings):
    """``SMSD_DUMMY__*``."""

    base_url: str = "https://sms.dummy.example"
    token: SecretStr = SecretStr("")
    batch_size: int = Field(MAX_PHONES, ge=1, le=MAX_PHONES)

    def credential_fields(self) -> tuple[str, ...]:
        return ("token",)


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["authorization"] = f"Bearer {self._token}"
        yield request


class DummyProvider(Provider):
    name: ClassVar[str] = "dummy"
    capabilities: ClassVar[Capabilities] = Capabilities(batch_size=MAX_PHONES)

    def __init__(self, settings: DummySettings, client: httpx.Client) -> None:
        super().__init__(client)
        self.settings = settings
        self.batch_size = min(settings.batch_size, MAX_PHONES)
        self._auth = BearerAuth(settings.token.get_secret_value())

    def _build(self, request: SendRequest) -> HttpCall:
        body = {
            "to": list(request.phones),
            "template": request.template.vendor_template,
            "params": list(request.template.params),
            "ref": request.bid,
        }
        return HttpCall(self.settings.base_url + PATH, json=body, auth=self._auth)

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        code, answer = self._coded_json(response, "code")
        if code != SUCCESS:
            raise classify(self.name, code, str(answer.get("message", "")), CODES, answer)
        results = answer.get("results")
        if not isinstance(results, list):
            raise Unreadable("no results list", raw=answer)
        by_phone = {item.get("to"): item for item in results if isinstance(item, dict)}
        outcomes = []
        for phone in request.phones:
            item = by_phone.get(phone)
            if item is None:
                raise Unreadable(f"no result for one of the {len(request.phones)} phones", raw=answer)
            if item.get("ok") is True:
                outcomes.append(RecipientOutcome(phone, True, str(item.get("id", "")), SUCCESS))
            else:
                outcomes.append(RecipientOutcome(phone, False, "", str(item.get("error", "")), "refused"))
        return SendResult(self.name, tuple(outcomes), raw=answer)


# -- the simulator: ``build(state, settings)`` -------------------------------------------------------


class DummySim:
    """Checks the token, refuses more than 10 numbers, refuses numbers that are not 11 digits one by one,
    and keeps every accepted body (``bodies``) for the tests to read."""

    def __init__(self, state: SimState, token: str) -> None:
        self.state = state
        self.token = token
        self.bodies: list[dict[str, Any]] = []

    def routes(self) -> list[Route]:
        return [Route(PATH, self._endpoint, methods=["POST"])]

    async def _endpoint(self, request: Request) -> Response:
        from providers.simulator.core import serve

        return await serve(self.state, "dummy", request, self._process, _refusal, gate=self._gate)

    def _gate(self, request: Request) -> tuple[Response, str] | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"code": 4, "message": MESSAGES["4"]}, status_code=401), "4"
        return None

    def _process(self, raw: bytes) -> tuple[Response, str]:
        from providers.simulator.core import Refused

        try:
            body = json.loads(raw)
            phones = [str(phone) for phone in body["to"]]
        except (ValueError, KeyError, TypeError):
            raise Refused("3") from None
        if not 1 <= len(phones) <= MAX_PHONES:
            raise Refused("3", f"1 to {MAX_PHONES} numbers a call")
        good = [phone for phone in phones if len(phone) == 11 and phone.isdigit()]
        self.state.accept("dummy", good)
        self.bodies.append(body)
        results = [
            {"to": phone, "ok": True, "id": uuid.uuid4().hex}
            if phone in good
            else {"to": phone, "ok": False, "error": BAD_NUMBER}
            for phone in phones
        ]
        return JSONResponse({"code": 0, "results": results}), SUCCESS


def _refusal(refused: Any) -> tuple[Response, str]:
    message = refused.message or MESSAGES.get(refused.code, "refused")
    return JSONResponse({"code": int(refused.code), "message": message}), refused.code


def build(state: SimState, settings: Settings) -> DummySim:
    return DummySim(state, settings.vendor("dummy", DummySettings).token.get_secret_value())


VENDOR = VendorDescriptor(
    name="dummy",
    provider=DummyProvider,
    settings=DummySettings,
    simulator=__name__,
    demo_credentials={"token": "demo-dummy-token"},
    codes=CODES,
    code_field="code",
    refused_code=BAD_NUMBER,
)
