"""An OTP's Redis round trips (issue 9, B3): each one waits behind whatever a bulk send has Redis doing, so
an OTP should make few. Counted by wrapping redis-py's one send per command or pipeline, with one OTP
through ``send_sms`` against the session's simulator (Celery's own broker traffic is not ours to count).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from config.settings import Settings
from providers.simulator.server import SimulatorServer

# What one OTP sends, in order: routing's view of the vendors and the message (one pipeline); the
# message's meta, the chunk's job and lease; the breaker and budget; the claim; the record (the events
# of what it wrote, the vendor-id index, the settle deadline and the lease's end); the result.
OTP_ROUND_TRIPS = 6


def otp(phone: str) -> dict[str, Any]:
    from tasks.send import send_sms

    kwargs = {"template": "login_code", "params": {"code": "123456"}, "kind": "otp"}
    result: dict[str, Any] = send_sms.apply(args=(phone,), kwargs=kwargs).get()
    return result


def test_an_otp_makes_six_round_trips_to_redis(
    settings: Settings, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    otp("13800000001")  # warm: the client's connection and the scripts Redis caches
    sends: list[bytes] = []
    send: Any = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sends.append(b"".join(command) if isinstance(command, list) else command)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    result = otp("13800000002")
    assert result["state"]["state"] == "submitted"
    assert not any(b"SCRIPT" in s and b"EXISTS" in s for s in sends)  # no pipeline asks for its scripts
    assert len(sends) == OTP_ROUND_TRIPS, [s[:60] for s in sends]
