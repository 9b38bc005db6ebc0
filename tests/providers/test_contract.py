"""The contract every provider adapter keeps, run for every registered vendor against its simulator over HTTP.

What the dispatcher relies on whatever the vendor: every phone of an accepted call has an outcome, the
vendor's codes land in the right class of the error tree, transport failures are sent / not sent /
ambiguous as they should be, an unreadable answer to a send is never taken for "not sent", and no call
carries more phones than the adapter's batch size. Vendor quirks (bodies, signing, whole code tables) are
tested in each vendor's own file.
"""

from __future__ import annotations

import importlib
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from config.settings import PROVIDERS, Settings
from providers.base import Provider, RenderedTemplate, SendRequest
from providers.descriptor import VendorDescriptor
from providers.errors import (
    AmbiguousError,
    BalanceError,
    ConfigError,
    NotSentError,
    ProviderError,
    RateLimitedError,
    RequestRejectedError,
    TransientError,
)
from providers.simulator.core import FaultPlan
from providers.simulator.server import SimulatorServer
from providers.vendors import VENDORS as REGISTERED
from tests.conftest import wait_for
from tests.providers.helpers import sim_client
from worker.registry import PROVIDER_CLASSES

PHONES = tuple(f"1390000{i:04d}" for i in range(1000))
BAD_PHONE = "12345"
# One template every vendor takes: a numeric id (Tencent's tpl_id), one named parameter (Deepfinch's
# ``code:1234``) and the rendered text (Xiaorui, Ihuyi) within Ihuyi's 300 characters, without emoji.
TEMPLATE = RenderedTemplate("7839", ("1234",), ("code",), "【测试】您的验证码是1234，5分钟内有效。")
ERROR_CLASSES: tuple[type[ProviderError], ...] = (
    TransientError, RateLimitedError, RequestRejectedError, ConfigError, BalanceError,
)
HANG_S = 0.3  # how long the simulator holds an answer; the client waits READ_TIMEOUT_S
READ_TIMEOUT_S = 0.1


@dataclass(frozen=True)
class Vendor:
    """What this suite needs to know of one registered vendor: its descriptor (``providers/vendors.py``)
    and, derived from the vendor's code table, one documented code per error class it has a code for."""

    descriptor: VendorDescriptor

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def cls(self) -> type[Provider]:
        return PROVIDER_CLASSES[self.name]

    @property
    def codes(self) -> Mapping[str, type[ProviderError]]:
        return self.descriptor.codes

    @property
    def by_class(self) -> Mapping[type[ProviderError], str]:
        """The first code of the vendor's table for each class of the error tree it uses."""
        first: dict[type[ProviderError], str] = {}
        for code, cls in self.codes.items():
            first.setdefault(cls, code)
        return first

    @property
    def code_field(self) -> str:
        return self.descriptor.code_field

    @property
    def refused_code(self) -> str:
        return self.descriptor.refused_code

    def __str__(self) -> str:
        return self.name


# Every registered vendor, plug-ins (SMSD_VENDOR_MODULES) included: a new vendor runs this suite as it is.
VENDORS = tuple(Vendor(descriptor) for descriptor in REGISTERED.values())
# Malformed answers to a send, by kind. ``None``: the vendor's code field holding null.
MALFORMED: dict[str, str | None] = {
    "not-json": "<html><body>502 upstream busy</body></html>",
    "empty": "",
    "not-an-object": "[0]",
    "no-code-field": '{"message": "ok"}',
    "code-is-null": None,
}
ProviderFactory = Callable[..., Provider]


def request_for(count: int, *, phones: tuple[str, ...] = PHONES) -> SendRequest:
    return SendRequest(phones[:count], TEMPLATE, bid="msg-1.0")


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def make_provider(
    vendor: Vendor, demo_settings: Settings, demo_sim: SimulatorServer
) -> Iterator[ProviderFactory]:
    """Builds ``vendor``'s adapter from its demo settings section, pointed at the simulator (or
    ``base_url``), over a real ``httpx.Client`` (``client_kwargs`` may add a transport or hooks)."""
    clients: list[httpx.Client] = []

    def make(base_url: str = "", read_timeout_s: float = 5.0, **client_kwargs: Any) -> Provider:
        section = demo_settings.vendor(vendor.name).model_copy(update={"base_url": base_url or demo_sim.url})
        client = sim_client(read_timeout_s, **client_kwargs)
        clients.append(client)
        return vendor.descriptor.build(section, client)

    yield make
    for client in clients:
        client.close()


def test_the_registry_holds_every_registered_adapter_under_its_own_name() -> None:
    assert tuple(PROVIDER_CLASSES) == PROVIDERS == tuple(REGISTERED)
    assert {name: cls.name for name, cls in PROVIDER_CLASSES.items()} == {name: name for name in PROVIDERS}
    assert {name: vendor.provider for name, vendor in REGISTERED.items()} == dict(PROVIDER_CLASSES)
    assert PROVIDERS[:5] == ("infocloud", "xiaorui", "deepfinch", "tencent", "ihuyi")


@pytest.mark.parametrize("vendor", VENDORS, ids=str)
class TestProviderContract:
    # -- code tables -----------------------------------------------------------------------------------

    def test_every_code_maps_to_a_specific_class_of_the_error_tree(self, vendor: Vendor) -> None:
        assert vendor.codes, "an adapter without a code table"
        for code, cls in vendor.codes.items():
            assert issubclass(cls, ProviderError) and cls is not ProviderError, code
            assert not issubclass(cls, NotSentError), f"{code}: a vendor's answer cannot mean 'never sent'"

    def test_the_descriptors_codes_are_the_adapter_modules_table(self, vendor: Vendor) -> None:
        assert vendor.codes is importlib.import_module(vendor.cls.__module__).CODES

    # -- (a) success -------------------------------------------------------------------------------------

    def test_a_full_batch_is_accepted_phone_by_phone(
        self, vendor: Vendor, demo_sim: SimulatorServer, make_provider: ProviderFactory
    ) -> None:
        bodies: list[bytes] = []
        provider = make_provider(event_hooks={"response": [lambda response: bodies.append(response.read())]})
        size = vendor.cls.capabilities.batch_size
        request = request_for(size)

        result = provider.send(request)

        assert result.provider == vendor.name
        assert tuple(o.phone for o in result.outcomes) == request.phones
        assert all(o.accepted and o.vendor_id for o in result.outcomes)
        assert len(bodies) == 1 and result.raw == json.loads(bodies[0])  # the vendor's answer, kept whole
        counters = demo_sim.state.counters(vendor.name)
        assert counters.received == dict.fromkeys(request.phones, 1)
        assert counters.call_sizes == [size]

    # -- (b) partial failure -------------------------------------------------------------------------------

    def test_a_bad_number_inside_an_accepted_batch_fails_alone(
        self, vendor: Vendor, demo_sim: SimulatorServer, make_provider: ProviderFactory
    ) -> None:
        if vendor.cls.capabilities.batch_size == 1:
            pytest.skip(f"{vendor.name} takes one number a call: there is no batch to fail in part")
        phones = (PHONES[0], BAD_PHONE, PHONES[1])

        result = make_provider().send(SendRequest(phones, TEMPLATE))

        assert [(o.phone, o.accepted) for o in result.outcomes] == [
            (PHONES[0], True), (BAD_PHONE, False), (PHONES[1], True),
        ]
        assert result.outcomes[1].code == vendor.refused_code
        assert all(o.vendor_id for o in result.outcomes if o.accepted)
        assert demo_sim.state.counters(vendor.name).received == {PHONES[0]: 1, PHONES[1]: 1}

    # -- (c) vendor codes ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda cls: cls.__name__)
    def test_each_error_class_is_reached_by_a_documented_code(
        self,
        vendor: Vendor,
        demo_sim: SimulatorServer,
        make_provider: ProviderFactory,
        error: type[ProviderError],
    ) -> None:
        code = vendor.by_class.get(error)
        if code is None:
            assert error not in set(vendor.codes.values()), f"{vendor.name} has a {error.__name__} code"
            pytest.skip(f"{vendor.name}'s code table has no {error.__name__} code")
        demo_sim.state.set_faults(vendor.name, FaultPlan(codes=(code,), code_rate=1.0))

        with pytest.raises(ProviderError) as raised:
            make_provider().send(request_for(1))

        assert (type(raised.value), raised.value.code, raised.value.provider) == (error, code, vendor.name)
        assert demo_sim.state.counters(vendor.name).received == {}

    # -- (d) transport -------------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("after_accept", "received"),
        [(False, {}), (True, {PHONES[0]: 1})],
        ids=["before-accept", "after-accept"],
    )
    def test_a_read_time_out_is_ambiguous(
        self,
        vendor: Vendor,
        demo_sim: SimulatorServer,
        make_provider: ProviderFactory,
        after_accept: bool,
        received: dict[str, int],
    ) -> None:
        plan = FaultPlan(timeout_rate=1.0, hang_s=HANG_S, after_accept=after_accept)
        demo_sim.state.set_faults(vendor.name, plan)

        with pytest.raises(AmbiguousError) as raised:
            make_provider(read_timeout_s=READ_TIMEOUT_S).send(request_for(1))

        assert raised.value.provider == vendor.name
        counters = demo_sim.state.counters(vendor.name)
        # The client cannot tell the two apart (that is why a time-out is ambiguous); once the vendor's
        # hang is over, it has sent the message exactly once after accepting, and never before.
        wait_for(lambda: counters.dropped == 1, timeout=5.0, interval=0.02)
        assert (counters.requests, counters.received) == (1, received)

    @pytest.mark.parametrize(
        ("after_accept", "received"),
        [(False, {}), (True, {PHONES[0]: 1})],
        ids=["before-accept", "after-accept"],
    )
    def test_a_reset_connection_is_ambiguous(
        self,
        vendor: Vendor,
        demo_sim: SimulatorServer,
        make_provider: ProviderFactory,
        after_accept: bool,
        received: dict[str, int],
    ) -> None:
        demo_sim.state.set_faults(vendor.name, FaultPlan(reset_rate=1.0, after_accept=after_accept))

        with pytest.raises(AmbiguousError) as raised:
            make_provider().send(request_for(1))

        assert (type(raised.value), raised.value.provider) == (AmbiguousError, vendor.name)
        counters = demo_sim.state.counters(vendor.name)
        assert (counters.requests, counters.received) == (1, received)

    def test_a_refused_connection_is_not_sent(self, vendor: Vendor, make_provider: ProviderFactory) -> None:
        with pytest.raises(NotSentError) as raised:
            make_provider(base_url=f"http://127.0.0.1:{closed_port()}").send(request_for(1))
        assert (type(raised.value), raised.value.provider) == (NotSentError, vendor.name)

    # -- (e) malformed answers -----------------------------------------------------------------------------

    @pytest.mark.parametrize("kind", MALFORMED)
    def test_a_malformed_answer_to_a_send_on_2xx_is_ambiguous(
        self, vendor: Vendor, make_provider: ProviderFactory, kind: str
    ) -> None:
        body = MALFORMED[kind]
        text = json.dumps({vendor.code_field: None}) if body is None else body
        calls: list[httpx.Request] = []

        def answer(sent: httpx.Request) -> httpx.Response:
            calls.append(sent)
            return httpx.Response(200, text=text, headers={"content-type": "application/json"})

        with pytest.raises(ProviderError) as raised:
            make_provider(transport=httpx.MockTransport(answer)).send(request_for(1))

        assert (type(raised.value), raised.value.code) == (AmbiguousError, "MALFORMED")
        assert len(calls) == 1  # never resent by the adapter

    def test_a_malformed_answer_on_another_status_is_transient(
        self, vendor: Vendor, make_provider: ProviderFactory
    ) -> None:
        transport = httpx.MockTransport(lambda sent: httpx.Response(404, text="<html>no such page</html>"))
        with pytest.raises(ProviderError) as raised:
            make_provider(transport=transport).send(request_for(1))
        assert (type(raised.value), raised.value.code) == (TransientError, "MALFORMED")

    # -- (f) batch size ------------------------------------------------------------------------------------

    def test_more_phones_than_the_batch_size_are_refused_without_a_call(
        self, vendor: Vendor, make_provider: ProviderFactory
    ) -> None:
        calls: list[httpx.Request] = []

        def answer(sent: httpx.Request) -> httpx.Response:
            calls.append(sent)
            return httpx.Response(500)

        provider = make_provider(transport=httpx.MockTransport(answer))
        size = vendor.cls.capabilities.batch_size
        phones = (*PHONES, "13911110000")[: size + 1]

        with pytest.raises(RequestRejectedError) as raised:
            provider.send(SendRequest(phones, TEMPLATE))

        assert (type(raised.value), raised.value.provider, calls) == (RequestRejectedError, vendor.name, [])
