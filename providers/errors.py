"""The one error tree every vendor adapter raises.

Adapters map each vendor's answer, and each transport failure, to the most specific class here, in one
place per vendor (its code table), with ``raise ... from exc``. Everything above ``providers/`` decides
what to do from the class alone::

    ProviderError
    ├── TransientError            retry the same recipients later with backoff
    │   ├── RateLimitedError      ... after a longer wait (``retry_after_s`` when the vendor says)
    │   └── NotSentError          the request never reached the vendor (connect failed): always safe to retry
    ├── MalformedPush             a vendor's push body we cannot read (kept for inspection, never applied)
    ├── AmbiguousError            the request may have reached the vendor (read time-out, dropped answer,
    │                             a 2xx answer we cannot read): never resent, see README "Ambiguous outcomes"
    └── PermanentError            record the failure with the vendor's code; never resend
        ├── RequestRejectedError  the vendor refused this request (bad parameter, unknown template, ...), or
        │                         we did before any call (``BATCH_SIZE``, ``PER_RECIPIENT``, vendor rules)
        ├── ConfigError           credentials, IP whitelist, signature, a base URL or header httpx cannot use
        │                         (``BAD_SETTINGS``): the provider is marked unhealthy
        └── BalanceError          out of credit: the provider is marked unhealthy until a balance poll
                                  clears it

Per-recipient refusals (a bad number inside an accepted batch) are not exceptions: they come back in
``SendResult.outcomes`` with ``accepted=False``. An answer that cannot be read has code ``MALFORMED``:
``AmbiguousError`` for a send answered 2xx, ``TransientError`` otherwise (another status, or a query, which
sends nothing).
"""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """A vendor call failed as a whole. ``code``/``text`` are the vendor's, ``raw`` its parsed answer."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str = "",
        text: str = "",
        raw: Any = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code
        self.text = text
        self.raw = raw

    def __reduce__(self) -> tuple[Any, ...]:  # keep keyword arguments through pickling (Celery results)
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class TransientError(ProviderError):
    """Worth retrying later; the vendor did not accept the request."""


class RateLimitedError(TransientError):
    """The vendor says we call too often. ``retry_after_s`` is its hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class NotSentError(TransientError):
    """The request never left this host (connection refused, connect time-out, pool exhausted)."""


class AmbiguousError(ProviderError):
    """The request was sent but no answer came back: the vendor may or may not have accepted it."""


class PermanentError(ProviderError):
    """Resending the same request will fail the same way."""


class RequestRejectedError(PermanentError):
    """The vendor refused the request itself (parameters, template, content)."""


class ConfigError(PermanentError):
    """Our credentials or account setup are wrong; no request to this provider can succeed."""


class BalanceError(PermanentError):
    """The account has no credit left."""


class MalformedPush(ProviderError):
    """A body a vendor pushed to us (receipts, replies) that cannot be read: not JSON or not a form, fields
    missing or of the wrong type. ``text`` says what is wrong (never a phone number). The push receiver
    answers 400 when it sees it at the door; the push applier moves the stored body to the dead-letter
    stream with this message."""


class UnsupportedFeature(NotImplementedError):
    """The vendor does not offer this operation (e.g. receipt pull where it only pushes)."""
