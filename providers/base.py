"""The provider contract: what every vendor adapter takes, returns and raises.

An adapter knows HTTP, signatures, payloads and codes; it knows nothing of Celery or Redis. The sequence
is fixed here (``Provider.send``: check the batch → the vendor's checks → build → post → parse, which
returns a typed result or raises an error of ``providers/errors.py`` whatever the answer holds) and every
optional operation raises ``UnsupportedFeature`` by default, so this class is also the capability table.
"""

from __future__ import annotations

import contextlib
import enum
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import httpx

from providers.errors import (
    AmbiguousError,
    ConfigError,
    NotSentError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
    UnsupportedFeature,
)
from providers.pushes import PushKind, PushReply
from providers.reading import UNREADABLE, Unreadable, decode_json

_NUMBER = re.compile(r"-?[0-9]+")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    """One logical template in the form a given vendor takes.

    ``vendor_template`` is the vendor's template id (empty for content-based vendors), ``params`` the
    values in the vendor's order, ``names`` the parameter names in that same order (Deepfinch sends
    ``name:value`` pairs), ``text`` the rendered content (for content-based vendors and length checks).
    """

    vendor_template: str
    params: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One vendor call: at most the vendor's batch size of phones.

    ``per_recipient`` is set when parameters differ per phone (Infocloud ``sendBatch``); it is aligned
    with ``phones``. ``bid`` is our id for the call (message id and chunk number), echoed in receipts
    by vendors that support it.
    """

    phones: tuple[str, ...]
    template: RenderedTemplate
    bid: str = ""
    per_recipient: tuple[RenderedTemplate, ...] | None = None


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """What the vendor said about one phone of an accepted call."""

    phone: str
    accepted: bool
    vendor_id: str = ""
    code: str = ""
    text: str = ""
    fee: int | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """The vendor accepted the call. ``batch_id`` is the vendor's id for the whole call, if any."""

    provider: str
    outcomes: tuple[RecipientOutcome, ...]
    batch_id: str = ""
    raw: Any = None


class DeliveryState(enum.StrEnum):
    """A receipt's verdict, normalized across vendors: each adapter maps its vendor's statuses through a
    table (``RECEIPT_STATES``). Only DELIVERED is a success; UNKNOWN is no verdict yet."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # the network could not deliver it (CMPP UNDELIV, DELETED; Tencent FAIL)
    EXPIRED = "expired"  # its validity period ran out before delivery (CMPP EXPIRED)
    REJECTED = "rejected"  # refused by the carrier or its SMS centre (CMPP REJECTD)
    UNKNOWN = "unknown"  # no final word: a missing status, or one the vendor's table does not know

    @classmethod
    def _missing_(cls, value: object) -> DeliveryState | None:
        # "failed" is what receipts were stored with (parked in Redis) before this set: read as undelivered.
        return cls.UNDELIVERED if value == "failed" else None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt. ``batch_id``/``vendor_id``/``bid`` are whatever the vendor gave to find it by."""

    provider: str
    phone: str
    state: DeliveryState
    code: str
    batch_id: str = ""
    vendor_id: str = ""
    bid: str = ""
    at: str = ""
    raw: Any = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A reply (MO) from a phone."""

    provider: str
    phone: str
    content: str
    at: str = ""
    ext: str = ""
    raw: Any = None


@dataclass(frozen=True, slots=True)
class Balance:
    """Credit left, in the vendor's unit (messages, or money where the vendor says so)."""

    provider: str
    item: str
    value: float
    raw: Any = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Static facts the planner needs about a vendor, so that what the vendor would refuse is refused in
    planning, before anything is queued (from the vendor's document)."""

    batch_size: int
    per_recipient_params: bool = False  # can one call carry different parameters per phone
    template_based: bool = True  # False: the vendor takes rendered text (Xiaorui, Ihuyi)
    international: bool = False  # accepts E.164 numbers outside mainland China
    max_content_chars: int = 500  # the rendered text, in characters
    forbids_emoji: bool = False  # refuses content holding an emoji (``providers.text.find_emoji``)
    param_forbidden_chars: str = ""  # characters no template parameter value may hold


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request an adapter wants made: the URL and what httpx takes for its body, query and auth."""

    url: str
    json: Any = None
    data: Mapping[str, str] | None = None
    params: Mapping[str, str] | None = None
    auth: httpx.Auth | None = None

    def kwargs(self) -> dict[str, Any]:
        given = {"json": self.json, "data": self.data, "params": self.params, "auth": self.auth}
        return {key: value for key, value in given.items() if value is not None}


class Provider:
    """Base class for vendor adapters: the one sequence every send goes through, and the capability table.

    :meth:`send` is a template method; a subclass sets ``name`` and ``capabilities`` and implements hooks,
    never ``send`` itself:

    - ``_check(request)``: refuse what the vendor would refuse, before any call (default: nothing);
    - ``_build(request) -> HttpCall``: the vendor's request (payload, signature, query);
    - ``_transmit(call) -> httpx.Response``: the exchange; the default posts through :meth:`_request`, the
      one place transport failures are mapped to the error tree;
    - ``_parse(response, request) -> SendResult``: the vendor's answer as a typed result or an error of the
      tree, whatever the body holds (read it with ``providers.reading``; raise ``Unreadable`` for what
      cannot be read).

    The batch size (``batch_size``: the capability, unless the settings lower it) is checked here, once for
    every vendor. Optional operations raise ``UnsupportedFeature`` unless overridden; they parse inside
    :meth:`_query`, where an unreadable answer is transient (asking again sends nothing).
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.batch_size: int = self.capabilities.batch_size

    def send(self, request: SendRequest) -> SendResult:
        """One vendor call for ``request``'s phones: a typed result, or an error of ``providers.errors``."""
        self.check_size(request)
        self._check(request)
        response = self._transmit(self._build(request))
        with self._reading(response):
            return self._parse(response, request)

    def check_size(self, request: SendRequest) -> None:
        """Refuse a call with no phone or more than ``batch_size``, or whose ``per_recipient`` templates are
        not one per phone (or that the vendor cannot carry): ``RequestRejectedError``, nothing sent."""
        count = len(request.phones)
        if not 1 <= count <= self.batch_size:
            raise RequestRejectedError(
                f"{self.name}: {count} phones in one call, 1 to {self.batch_size} allowed",
                provider=self.name,
                code="BATCH_SIZE",
            )
        per = request.per_recipient
        if per is not None and (
            len(per) != count or (count > 1 and not self.capabilities.per_recipient_params)
        ):
            raise RequestRejectedError(
                f"{self.name}: {len(per)} per-recipient templates for {count} phones", provider=self.name,
                code="PER_RECIPIENT",
            )

    def poll_receipts(self) -> Sequence[Receipt]:
        raise UnsupportedFeature(f"{self.name} has no receipt pull")

    def poll_inbound(self) -> Sequence[InboundMessage]:
        raise UnsupportedFeature(f"{self.name} has no inbound pull")

    def balance(self) -> Sequence[Balance]:
        raise UnsupportedFeature(f"{self.name} has no balance query")

    # -- pushes (vendor -> us): pure parsing of the stored body, see ``providers/pushes.py`` ----------

    def parse_receipt_push(self, body: bytes, content_type: str) -> Sequence[Receipt]:
        """The receipts in a body the vendor pushed; ``MalformedPush`` if it cannot be read."""
        raise UnsupportedFeature(f"{self.name} pushes no receipts")

    def parse_inbound_push(self, body: bytes, content_type: str) -> Sequence[InboundMessage]:
        """The replies (MO) in a body the vendor pushed; ``MalformedPush`` if it cannot be read."""
        raise UnsupportedFeature(f"{self.name} pushes no replies")

    def push_reply(self, kind: PushKind) -> PushReply:
        """The literal answer the vendor expects to a push of ``kind`` (it retries on anything else)."""
        raise UnsupportedFeature(f"{self.name} pushes nothing")

    def push_signed(self, body: bytes, content_type: str) -> bool:
        """True when ``body`` carries the vendor's proof that it is ours (Infocloud: our apiKey), False
        when it carries a wrong one; ``MalformedPush`` when the proof cannot even be read. Unsupported
        for vendors that sign nothing: their receivers need the ``push_token`` in the URL."""
        raise UnsupportedFeature(f"{self.name} signs no push")

    def push_kept(self, body: bytes, content_type: str) -> bytes:
        """The push as the receiver stores it until it is applied (and keeps it if it fails): the body,
        unless it carries our own credential as its proof (Infocloud's apiKey), which is dropped here so
        that no credential rests in Redis."""
        return body

    # -- the hooks of ``send`` ----------------------------------------------------------------------

    def _check(self, request: SendRequest) -> None:
        """The vendor's own refusals (content, template, number format) before any call. Default: none."""

    def _build(self, request: SendRequest) -> HttpCall:
        raise NotImplementedError

    def _transmit(self, call: HttpCall) -> httpx.Response:
        return self._request("POST", call.url, **call.kwargs())

    def _parse(self, response: httpx.Response, request: SendRequest) -> SendResult:
        raise NotImplementedError

    # -- shared transport and reading ---------------------------------------------------------------

    def _query(self, call: HttpCall, parse: Callable[[httpx.Response], T]) -> T:
        """A query (receipts, replies, balance): ``parse`` the answer to ``call``. Asking again sends nothing,
        so an answer that cannot be read is a ``TransientError``."""
        response = self._transmit(call)
        with self._reading(response, query=True):
            return parse(response)

    @contextlib.contextmanager
    def _reading(self, response: httpx.Response, *, query: bool = False) -> Iterator[None]:
        """Parse ``response`` inside this block: ``Unreadable``, and as a backstop whatever Python raises on
        data of a shape the parser did not expect (``reading.UNREADABLE``), become :meth:`malformed`."""
        try:
            yield
        except Unreadable as exc:
            raise self.malformed(response, exc.what, query=query, raw=exc.raw) from exc
        except UNREADABLE as exc:
            raise self.malformed(response, type(exc).__name__, query=query) from exc

    def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST and map transport failures to the error tree (the one place that does so)."""
        return self._request("POST", url, **kwargs)

    def _request(self, method: str, url: str, *, server_errors: bool = True, **kwargs: Any) -> httpx.Response:
        """Make the request, mapping every failure to the error tree. With ``server_errors`` (the default)
        a 5xx answer is :meth:`server_error` without its body being read."""
        try:
            response = self.client.request(method, url, **kwargs)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError) as exc:
            # The request could not even be built (a base URL httpx cannot parse or has no transport for, a
            # header our settings filled with characters HTTP cannot carry): nothing was sent, and no call
            # will do better until the settings change. The URL is left out of the message: it may hold
            # credentials (user:password@host).
            raise ConfigError(
                f"{self.name}: cannot make the request from the settings ({type(exc).__name__})",
                provider=self.name,
                code="BAD_SETTINGS",
            ) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise NotSentError(f"{self.name}: {type(exc).__name__}: {exc}", provider=self.name) from exc
        except httpx.WriteTimeout as exc:
            # The body was not fully written, so the vendor cannot have a complete request to act on.
            raise NotSentError(f"{self.name}: write time-out", provider=self.name) from exc
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            raise AmbiguousError(
                f"{self.name}: request sent, no answer ({type(exc).__name__})", provider=self.name
            ) from exc
        except httpx.HTTPError as exc:
            raise AmbiguousError(f"{self.name}: {type(exc).__name__}: {exc}", provider=self.name) from exc
        if server_errors and response.status_code >= 500:
            raise self.server_error(response)
        return response

    def server_error(self, response: httpx.Response) -> TransientError:
        """A 5xx answer: the vendor failed to handle the request; retried later."""
        return TransientError(
            f"{self.name}: HTTP {response.status_code}",
            provider=self.name,
            code=f"HTTP{response.status_code}",
            text=response.text[:200],
        )

    def _json(self, response: httpx.Response) -> Any:
        """The answer's JSON value; ``Unreadable`` if the body is not JSON (see ``reading.decode_json``)."""
        try:
            return decode_json(response.content)
        except ValueError as exc:
            raise Unreadable(f"not JSON ({exc})") from exc

    def _coded_json(self, response: httpx.Response, field: str) -> tuple[str, dict[str, Any]]:
        """``(code, answer)``: a JSON object answer and its numeric ``field`` (see :func:`vendor_code`);
        ``Unreadable`` without one."""
        answer = self._json(response)
        code = vendor_code(answer, field)
        if code is None:
            raise Unreadable(f"no numeric {field!r}", raw=answer)
        return code, answer

    def malformed(
        self, response: httpx.Response, what: str = "", *, query: bool = False, raw: Any = None
    ) -> ProviderError:
        """An answer we cannot read (``what`` says why). To a send on HTTP 2xx the vendor may have acted
        (``AmbiguousError``: never resent); on another status it did not, and a query sends nothing
        (``TransientError``: asked again later)."""
        cls = AmbiguousError if response.is_success and not query else TransientError
        return cls(
            f"{self.name}: malformed answer (HTTP {response.status_code})" + (f": {what}" if what else ""),
            provider=self.name,
            code="MALFORMED",
            text=response.text[:200],
            raw=raw,
        )


def vendor_code(answer: Any, field: str) -> str | None:
    """The vendor's numeric code in ``answer[field]`` as a string, whether it came as ``"0"``, ``0`` or
    ``0.0``.

    None when ``answer`` is not an object or the field is missing or not a whole number (``null``,
    ``true``, a list, ``"ok"``, ``NaN``): every code in the numeric vendors' tables is a number, so anything
    else is an answer we cannot read.
    """
    value = answer.get(field) if isinstance(answer, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return value.strip()
    return None


def receipt_state(
    status: Any, table: Mapping[str, DeliveryState], other: DeliveryState = DeliveryState.UNKNOWN
) -> DeliveryState:
    """A vendor's receipt status through the vendor's table. A status string the table does not hold is
    ``other``: UNKNOWN, unless the vendor's document classifies every other value; a missing, empty or
    non-string status is always UNKNOWN (the vendor gave no verdict we can read)."""
    if not isinstance(status, str) or not status.strip():
        return DeliveryState.UNKNOWN
    return table.get(status.strip(), other)


def classify(
    provider: str,
    code: str,
    text: str,
    table: Mapping[str, type[ProviderError]],
    raw: Any = None,
    *,
    retry_after_s: float | None = None,
) -> ProviderError:
    """Build the error for a vendor code from the vendor's table.

    A code the table does not know is permanent for the request: retrying something we do not
    understand risks sending twice, and the code and text are kept for an operator to classify.
    ``retry_after_s`` is the vendor's wait hint in seconds, kept when the code is a rate limit and it is
    a finite, non-negative number (anything else is no hint: the caller's own backoff applies).
    """
    cls = table.get(code, RequestRejectedError)
    error = cls(f"{provider}: code {code}: {text}", provider=provider, code=code, text=text, raw=raw)
    if isinstance(error, RateLimitedError):
        sane = retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0
        error.retry_after_s = retry_after_s if sane else None
    return error
