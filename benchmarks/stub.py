"""An answer-only vendor stand-in for benchmarks: the worker's own ceiling, not the vendor's.

It answers every Infocloud send call with its success shape (code 200, a fresh ``msgId``, no
``failPhones``), and every Tencent ``sendsms`` with ``result`` 0 and a fresh ``sid`` (B3's OTP vendor),
and does nothing else: no signature check, no receipts, no bookkeeping but what the
benchmark reads. Each call's arrival time (unix s, when its whole body is read), its ``bid`` and its
number of phones are kept (Tencent: its ``ext``, which carries our bid) and served at
``GET /_stub/calls``; ``GET /_stub/stats`` gives the totals.
Plain asyncio on one socket per connection, TCP_NODELAY, HTTP/1.1 keep-alive: a 1000-phone call costs
it a few tens of microseconds.

    uv run python benchmarks/stub.py --port 18801
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import time

CALLS: list[tuple[float, str, int]] = []  # (arrival, bid, phones)
IDS = itertools.count(1)


def answer(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def field(body: bytes, name: bytes) -> bytes:
    """A string field's raw value in a flat JSON body (our send bodies have no escapes there)."""
    start = body.find(b'"' + name + b'":')
    if start < 0:
        return b""
    start = body.find(b'"', start + len(name) + 3) + 1
    return body[start : body.find(b'"', start)]


def handle(method: bytes, path: bytes, body: bytes) -> bytes:
    if method == b"POST" and path.startswith(b"/message/send"):
        phones = field(body, b"phones")
        count = phones.count(b",") + 1 if phones else len(json.loads(field(body, b"phonesJson") or b"[]"))
        CALLS.append((time.time(), field(body, b"bid").decode(), count))
        data = {"code": 200, "message": "OK", "data": {"msgId": f"stub{next(IDS)}", "failPhones": ""}}
        return answer("200 OK", json.dumps(data).encode())
    if method == b"POST" and path.startswith(b"/v5/tlssmssvr/sendsms"):  # Tencent, one phone a call
        bid = field(body, b"ext").decode()
        CALLS.append((time.time(), bid, 1))
        data = {"result": 0, "errmsg": "OK", "ext": bid, "fee": 1, "sid": f"stub:{next(IDS)}"}
        return answer("200 OK", json.dumps(data).encode())
    if path.startswith(b"/_stub/calls"):
        return answer("200 OK", json.dumps({"calls": CALLS}).encode())
    if path.startswith(b"/_stub/stats"):
        stats = {"calls": len(CALLS), "accepted": sum(c[2] for c in CALLS)}
        stats["last_accept_at"] = CALLS[-1][0] if CALLS else 0.0
        return answer("200 OK", json.dumps(stats).encode())
    if path.startswith(b"/_stub/reset"):
        CALLS.clear()
        return answer("200 OK", b"{}")
    return answer("404 Not Found", b"{}")


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            method, path, _ = line.split(b" ", 2)
            length = 0
            for header in rest.lower().split(b"\r\n"):
                if header.startswith(b"content-length:"):
                    length = int(header[15:])
            body = await reader.readexactly(length) if length else b""
            writer.write(handle(method, path, body))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, limit=2**24)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18801)
    asyncio.run(main(parser.parse_args().port))
