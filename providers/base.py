"""The provider contract: what every vendor adapter takes, returns and raises.

An adapter knows HTTP, signatures, payloads and codes; it knows nothing of Celery or Redis. The sequence
is fixed here (build payload → post → parse per-recipient status → raise) and every optional operation
raises ``UnsupportedFeature`` by default, so this class is also the capability table.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from providers.errors import (
    AmbiguousError,
    NotSentError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
    UnsupportedFeature,
)

_NUMBER = re.compile(r"-?\d+")


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
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"


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


class Provider:
    """Base class for vendor adapters. Subclasses set ``name`` and ``capabilities`` and implement ``send``."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def send(self, request: SendRequest) -> SendResult:
        raise NotImplementedError

    def poll_receipts(self) -> Sequence[Receipt]:
        raise UnsupportedFeature(f"{self.name} has no receipt pull")

    def poll_inbound(self) -> Sequence[InboundMessage]:
        raise UnsupportedFeature(f"{self.name} has no inbound pull")

    def balance(self) -> Sequence[Balance]:
        raise UnsupportedFeature(f"{self.name} has no balance query")

    # -- shared transport handling ------------------------------------------------------------------

    def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST and map transport failures to the error tree (the one place that does so)."""
        return self._request("POST", url, **kwargs)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, url, **kwargs)
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
        if response.status_code >= 500:
            raise TransientError(
                f"{self.name}: HTTP {response.status_code}",
                provider=self.name,
                code=f"HTTP{response.status_code}",
                text=response.text[:200],
            )
        return response

    def _json(self, response: httpx.Response) -> Any:
        """Parse a JSON answer. A malformed one is ``malformed(response)``."""
        try:
            return response.json()
        except ValueError as exc:
            raise self.malformed(response) from exc

    def _coded_json(self, response: httpx.Response, field: str) -> tuple[str, dict[str, Any]]:
        """``(code, answer)``: a JSON object answer and its numeric ``field`` (see :func:`vendor_code`).
        Without one the answer is ``malformed(response)``: on HTTP 2xx a send may have been acted on
        (ambiguous, never resent)."""
        answer = self._json(response)
        code = vendor_code(answer, field)
        if code is None:
            raise self.malformed(response)
        return code, answer

    def malformed(self, response: httpx.Response) -> ProviderError:
        """An answer we cannot read. On HTTP 2xx the vendor may have acted on the request (ambiguous: never
        resent); otherwise it did not (transient)."""
        cls = AmbiguousError if response.is_success else TransientError
        return cls(
            f"{self.name}: malformed answer (HTTP {response.status_code})",
            provider=self.name,
            code="MALFORMED",
            text=response.text[:200],
        )


def vendor_code(answer: Any, field: str) -> str | None:
    """The vendor's numeric code in ``answer[field]`` as a string, whether it came as ``"0"``, ``0`` or
    ``0.0``.

    None when ``answer`` is not an object or the field is missing or not a whole number (``null``,
    ``true``, a list, ``"ok"``): every code in the numeric vendors' tables is a number, so anything else
    is an answer we cannot read.
    """
    value = answer.get(field) if isinstance(answer, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return value.strip()
    return None


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
    ``retry_after_s`` is the vendor's wait hint in seconds, kept when the code is a rate limit.
    """
    cls = table.get(code, RequestRejectedError)
    error = cls(f"{provider}: code {code}: {text}", provider=provider, code=code, text=text, raw=raw)
    if isinstance(error, RateLimitedError):
        error.retry_after_s = retry_after_s
    return error
