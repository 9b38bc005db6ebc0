"""What the hostile-answer strategies (``tests/providers/strategies.py``) are fed to, and how the result is
judged: one :class:`Target` per adapter operation, with the vendor document's own answers to mutate.

:func:`outcome` runs one reply through one target and says ``accepted`` (a well-typed result) or
``refused`` (an error of ``providers/errors.py`` that keeps the error policy), raising :class:`Unhandled`
for anything else. Used by ``test_hostile_answers.py`` and, through :func:`fuzz_targets`, by
``reliability/fuzz.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import strategies as st

from config.settings import Settings
from providers.base import (
    Balance,
    DeliveryState,
    InboundMessage,
    Provider,
    Receipt,
    RecipientOutcome,
    RenderedTemplate,
    SendRequest,
    SendResult,
)
from providers.errors import AmbiguousError, ProviderError, RateLimitedError, TransientError
from providers.reading import UNREADABLE, Unreadable
from tests.providers.strategies import Reply, replies

ACCEPTED = "accepted"
REFUSED = "refused"
MAX_RETRY_AFTER_S = 3600.0  # what any adapter may hand on as a wait hint (Deepfinch's cap)

# -- the vendor documents' own answers ---------------------------------------------------------------

BATCH_PHONES = ("18983437010", "18983437011", "13900000003")
TEMPLATE = RenderedTemplate("7839", ("1234",), ("code",), "【测试】您的验证码是1234，5分钟内有效。")
# Decoded answers from shared/seeds/ (success and failure) per (vendor, operation); phones set to ours.
EXAMPLES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("infocloud", "send"): (
        {"code": 200, "data": {"msgId": "574730770464800768"}, "requestId": "176e2bfc"},
        {"code": 200, "data": {"msgId": "822515453833289728", "desc": "null", "failPhones": "13900000003"}},
        {"code": 200, "data": {"msgid": "574729305331499008", "failPhones": ["18983437011"]}},
        {"code": 60009, "message": "短信资源被锁定"},
        {"code": 6000, "message": "访问频繁,请稍后再试"},
    ),
    ("infocloud", "receipts"): (
        {"code": 200, "message": "查询成功", "data": [
            {"msgId": "640614750879358976", "tel": "18983437010", "arrive": "DELIVRD",
             "arriveTime": "2308071315", "bid": "202303231335001220"},
            {"msgId": "640614750879358976", "tel": "18983437011", "arrive": "UNDELIV",
             "arriveTime": "2308071315", "bid": "202303231335001220"},
        ], "requestId": "2fffb7d9"},
        {"code": 6000, "message": "访问频繁,请稍后再试"},
    ),
    ("infocloud", "balance"): (
        {"code": 200, "data": [{"itemName": "行业短信", "residueValue": 9784},
                               {"itemName": "会员短信", "residueValue": 10007}], "requestId": "28284840"},
        {"code": 200, "data": 5},
    ),
    ("xiaorui", "send"): (
        {"status": "0", "balance": -153278040, "list": [
            {"mid": "4C2CA88382720003", "mobile": "18983437010", "result": 0},
            {"mid": "4C2CA88382720004", "mobile": "18983437011", "result": 0},
            {"mid": "4C2CA88382720005", "mobile": "13900000003", "result": 100},
        ]},
        {"status": "3", "balance": 0, "list": None},
    ),
    ("xiaorui", "receipts"): (
        {"status": "0", "balance": -153278040, "list": [
            {"flag": 1, "mid": "4C36654382720005", "spid": "922011", "accessCode": "106901234",
             "mobile": "18983437010", "stat": "MA:0029", "time": "2017-04-12 01:38:21"},
            {"flag": 1, "mid": "4C36654382720006", "spid": "922011", "accessCode": "106901234",
             "mobile": "18983437011", "stat": "DELIVRD", "time": "2017-04-12 01:38:21"},
        ]},
        {"status": "0", "balance": -153278040, "list": []},
    ),
    ("xiaorui", "inbound"): (
        {"status": "0", "balance": -153278040, "list": [
            {"flag": 0, "mid": "4C36654382720005", "spid": "922011", "accessCode": "10690",
             "mobile": "18983437010", "content": "上行内容1", "time": "2017-04-12 01:38:21"},
        ]},
        {"status": "0", "balance": -153278040, "list": []},
    ),
    ("xiaorui", "balance"): (
        {"status": 0, "balance": -153278040, "chargeType": "POSTCHARGE"},
        {"status": 3, "balance": 0, "chargeType": "PRECHARGE"},
    ),
    ("deepfinch", "send"): (
        {"request_id": "TID8bf47ab6eda64476973cc5f5b6ebf57e", "status": "OK"},
        {"status": "INVALID_ARGUMENT", "reason": "content mismatch", "request_id": "TID2b540d5a7f1f44dc"},
        {"status": "RATE_LIMIT_EXCEEDED", "reason": "调用频率超出限额"},
        {"message": "HMAC signature does not match"},
    ),
    ("tencent", "send"): (
        {"result": 0, "errmsg": "OK", "ext": "", "fee": 1, "sid": "xxxxxxx"},
        {"result": 1023, "errmsg": "单个手机号30秒内下发短信条数超过设定的上限"},
        {"result": 1026, "errmsg": "单个手机号下发相同内容超过设定的上限"},
    ),
    ("tencent", "receipts"): (
        {"result": 0, "errmsg": "ok", "count": 2, "data": [
            {"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13788888888",
             "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "s1"},
            {"user_receive_time": "2015-10-17 08:03:05", "nationcode": "852", "mobile": "91234567",
             "report_status": "FAIL", "errmsg": "MK:0001", "description": "未送达", "sid": "s2"},
        ]},
        {"result": 1001, "errmsg": "sig校验失败"},
    ),
    ("tencent", "inbound"): (
        {"result": 0, "errmsg": "ok", "count": 1, "data": [
            {"extend": "", "mobile": "13788888888", "nationcode": "86", "sign": "腾讯云", "text": "TD",
             "time": 1457336869},
        ]},
    ),
    ("ihuyi", "send"): (
        {"code": 2, "msg": "提交成功", "smsid": "14627523471891234"},
        {"code": 4082, "msg": "超出同一手机号一天之内【5】条短信限制", "smsid": "0"},
        {"code": 40501, "msg": "动态密码已过期", "smsid": "0"},
        {"code": 4080, "msg": "同一手机号码同一秒钟之内发送频率不能超过1条", "smsid": "0"},
    ),
    ("ihuyi", "balance"): (
        {"code": 2, "msg": "查询成功", "num": 398},
        {"code": 405, "msg": "API ID 或 API KEY 不正确", "num": 0},
    ),
}  # fmt: skip


# -- targets -----------------------------------------------------------------------------------------


class Unhandled(AssertionError):
    """A reply made an adapter do something its contract forbids (raise outside the error tree, return an
    ill-typed result, or break the error policy)."""


@dataclass(frozen=True)
class Target:
    """One operation (``send``, ``receipts``, ``inbound``, ``balance``) of one vendor's adapter."""

    vendor: str
    operation: str

    def __str__(self) -> str:
        return f"{self.vendor}.{self.operation}"

    @property
    def examples(self) -> tuple[Any, ...]:
        return EXAMPLES[(self.vendor, self.operation)]

    def replies(self) -> st.SearchStrategy[Reply]:
        return replies(self.examples)

    def request(self, provider: Provider) -> SendRequest:
        """A send every adapter passes on to its vendor (its own checks pass)."""
        phones = BATCH_PHONES[: min(provider.capabilities.batch_size, len(BATCH_PHONES))]
        return SendRequest(phones, TEMPLATE, bid="msg-1.0")

    def call(self, provider: Provider) -> Any:
        operations: dict[str, Callable[[], Any]] = {
            "send": lambda: provider.send(self.request(provider)),
            "receipts": provider.poll_receipts,
            "inbound": provider.poll_inbound,
            "balance": provider.balance,
        }
        return operations[self.operation]()


TARGETS: tuple[Target, ...] = tuple(Target(vendor, operation) for vendor, operation in EXAMPLES)
UNSUPPORTED: tuple[Target, ...] = (
    Target("infocloud", "inbound"),  # MO is push-only
    Target("deepfinch", "receipts"),
    Target("deepfinch", "inbound"),
    Target("deepfinch", "balance"),
    Target("tencent", "balance"),
    Target("ihuyi", "receipts"),  # push-only
    Target("ihuyi", "inbound"),  # push-only
)


Answer = Callable[[httpx.Request], httpx.Response]


def mock_provider(vendor: str, settings: Settings, answer: Answer) -> Provider:
    """``vendor``'s adapter from its section of ``settings``, every request answered by ``answer``."""
    from worker.registry import PROVIDER_CLASSES

    section = settings.vendor(vendor).model_copy(update={"base_url": f"https://{vendor}.test"})
    client = httpx.Client(transport=httpx.MockTransport(answer))
    return PROVIDER_CLASSES[vendor](section, client)  # type: ignore[call-arg]


def outcome(target: Target, provider: Provider, reply: Reply) -> str:
    """Call ``target`` on ``provider`` (whose transport answers ``reply``): ``accepted`` or ``refused``;
    :class:`Unhandled` for anything else."""
    try:
        result = target.call(provider)
    except ProviderError as exc:
        check_error(target, reply, exc)
        return REFUSED
    except Exception as exc:
        raise Unhandled(f"{target}: {type(exc).__name__} escaped: {exc!r}"[:500]) from exc
    check_result(target, provider, result)
    return ACCEPTED


def check_error(target: Target, reply: Reply, exc: ProviderError) -> None:
    """An error of the tree that keeps the policy: strings that can be written anywhere, a sane wait
    hint, and "unreadable" as ambiguous only for a send answered 2xx."""
    cause = exc.__cause__
    if isinstance(cause, UNREADABLE) and not isinstance(cause, Unreadable):
        raise Unhandled(f"{target}: the parser left {type(cause).__name__} to the backstop: {cause!r}"[:500])
    _utf8(target, exc.provider, exc.code, exc.text)
    if exc.provider != target.vendor:
        raise Unhandled(f"{target}: error from provider {exc.provider!r}")
    if isinstance(exc, RateLimitedError) and exc.retry_after_s is not None:
        wait = exc.retry_after_s
        capped = target.vendor != "deepfinch" or wait <= MAX_RETRY_AFTER_S
        if not (math.isfinite(wait) and wait >= 0 and capped):
            raise Unhandled(f"{target}: retry_after_s {wait!r}")
    if exc.code == "MALFORMED":
        sent = target.operation == "send" and 200 <= reply.status < 300
        expected = AmbiguousError if sent else TransientError
        if type(exc) is not expected:
            raise Unhandled(f"{target}: unreadable HTTP {reply.status} answer is {type(exc).__name__}")


def check_result(target: Target, provider: Provider, result: Any) -> None:
    """A result of the operation's type, every field of its declared type."""
    if target.operation == "send":
        _check_send(target, provider, result)
        return
    kind = {"receipts": Receipt, "inbound": InboundMessage, "balance": Balance}[target.operation]
    if not isinstance(result, tuple) or not all(isinstance(item, kind) for item in result):
        raise Unhandled(f"{target}: not a tuple of {kind.__name__}: {result!r}"[:500])
    for item in result:
        if isinstance(item, Receipt):
            if not isinstance(item.state, DeliveryState):
                raise Unhandled(f"{target}: state {item.state!r}")
            _utf8(target, item.phone, item.code, item.batch_id, item.vendor_id, item.bid, item.at)
        elif isinstance(item, InboundMessage):
            _utf8(target, item.phone, item.content, item.at, item.ext)
        elif isinstance(item, Balance):
            _utf8(target, item.item)
            if type(item.value) is not float or not math.isfinite(item.value):
                raise Unhandled(f"{target}: balance value {item.value!r}")
        if item.provider != target.vendor:
            raise Unhandled(f"{target}: result from provider {item.provider!r}")


def _check_send(target: Target, provider: Provider, result: Any) -> None:
    request = target.request(provider)
    if not isinstance(result, SendResult) or result.provider != target.vendor:
        raise Unhandled(f"{target}: not a SendResult of {target.vendor}: {result!r}"[:500])
    if tuple(getattr(o, "phone", None) for o in result.outcomes) != request.phones:
        raise Unhandled(f"{target}: outcomes are not one per phone sent, in order")
    _utf8(target, result.batch_id)
    for o in result.outcomes:
        if not isinstance(o, RecipientOutcome) or type(o.accepted) is not bool:
            raise Unhandled(f"{target}: outcome {o!r}"[:500])
        _utf8(target, o.vendor_id, o.code, o.text)
        if o.fee is not None and (type(o.fee) is not int or o.fee < 0):
            raise Unhandled(f"{target}: fee {o.fee!r}")


def _utf8(target: Target, *values: Any) -> None:
    for value in values:
        if not isinstance(value, str):
            raise Unhandled(f"{target}: {value!r} is not a string"[:500])
        try:
            value.encode()
        except UnicodeEncodeError:
            raise Unhandled(f"{target}: {value!r} cannot be written as UTF-8"[:500]) from None


def fuzz_targets() -> Iterator[tuple[str, tuple[st.SearchStrategy[Reply], Callable[[Reply], str]]]]:
    """For ``reliability/fuzz.py``: ``(name, (strategy, check))`` per target, ``check(reply)`` returning
    ``accepted``/``refused`` and raising for an unhandled case. Settings from the environment (the
    demo credentials)."""
    from config.settings import load_settings

    settings = load_settings()
    for target in TARGETS:
        yield f"adapter {target}", (target.replies(), _checker(target, settings))


def _checker(target: Target, settings: Settings) -> Callable[[Reply], str]:
    """``check(reply)`` for :func:`fuzz_targets`: one adapter, its transport answering the last reply."""
    held: list[Reply] = []

    def serve(request: httpx.Request) -> httpx.Response:
        return held[-1].response(request)

    provider = mock_provider(target.vendor, settings, serve)

    def check(reply: Reply) -> str:
        held[:] = [reply]
        return outcome(target, provider, reply)

    return check
