"""What every part of the store shares: the client, the settings and the script runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from config.settings import Settings
from worker.events import Event
from worker.store.client import script
from worker.store.keys import Keys
from worker.store.records import now_ms


def fields(mapping: Mapping[str, str | int]) -> dict[FieldT, EncodableT]:
    """``mapping`` as redis-py's field mapping type (for HSET and XADD, whose key type is invariant)."""
    return dict(mapping.items())


class StoreBase:
    """The client and settings; the helpers every part of the store uses."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.ttl = settings.retention_s

    def _script(self, name: str) -> Any:
        return script(self.r, name)

    def publish(self, events: Sequence[Event]) -> None:
        """Append ``events`` to the stream now (one round trip)."""
        if events:
            with self.r.pipeline(transaction=False) as pipe:
                self._publish(pipe, events)
                pipe.execute()

    def _publish(self, pipe: Any, events: Sequence[Event]) -> None:
        """Append ``events`` to the stream in ``pipe``, bounded by age (MINID) as it goes."""
        at = now_ms()
        oldest = at - self.ttl * 1000
        for event in events:
            pipe.xadd(Keys.events, fields(event.encode(at)), minid=oldest, approximate=True)
