"""``smsdispatch demo``: the whole system on one machine with no credentials and no services.

It starts an embedded Redis (another only with ``--redis-url``), the vendor simulator, the HTTP app (push
receivers, in a thread), a Celery worker and beat as subprocesses, sends an OTP and a 5,000-recipient
notification (plus a few sends through each other vendor) through the real pipeline, waits for the
receipts (pulled from Infocloud, Xiaorui and Tencent; pushed by Ihuyi to the HTTP app), prints a summary,
runs a 300-row campaign file with per-recipient parameters to its last receipt (its progress, refused row
and summary printed), and shuts down, saying what it stops.

Everything it starts runs with the demo's settings (:func:`demo_environment`), whatever the environment
holds: with an operator's ``SMSD_REDIS_URL`` exported, the demo's test traffic used to land on the real
Redis, where a real worker with real vendor URLs picked it up.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from providers.simulator import DEMO_ENV
from providers.simulator.core import SimConfig
from worker.preflight import masked_url, ping_redis
from worker.store import FINAL

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
# Faster than the vendors' real pace (Infocloud: 3 receipt queries a minute), so the demo ends in seconds.
DEMO_SPEED = {
    **{
        f"SMSD_{name.upper()}__{key}": value
        for name in ("INFOCLOUD", "XIAORUI", "TENCENT")
        for key, value in (("QUERY_PER_MINUTE", "600"), ("RECEIPT_POLL_INTERVAL_S", "1"))
    },
    "SMSD_LOG_LEVEL": "WARNING",
}
# Ihuyi signs nothing: its pushes carry this token in the URL the demo gives the simulator.
DEMO_PUSH_TOKENS = {"ihuyi": "demo-ihuyi-push-token"}
PUSHED = tuple(DEMO_PUSH_TOKENS)


@dataclass
class Send:
    label: str
    kwargs: dict[str, Any]
    message_id: str = ""
    started: float = 0.0
    submitted_at: float = 0.0
    settled_at: float = 0.0
    done: bool = False


def demo_sends(recipients: int) -> list[Send]:
    def phones(prefix: str, n: int) -> list[str]:
        return [f"{prefix}{i:08d}" for i in range(n)]

    return [
        Send(
            "OTP (kind=otp, routed to Tencent)",
            {
                "to": "+86 138 0013 8000",
                "template": "login_code",
                "params": {"code": "246810"},
                "kind": "otp",
            },
        ),
        Send(
            f"notification to {recipients:,} (Infocloud)",
            {
                "to": phones("139", recipients),
                "template": "order_shipped",
                "params": {"order": "A1024", "tracking": "SF1234567"},
            },
        ),
        Send(
            "marketing to 1,200 (Xiaorui, text)",
            {
                "to": phones("137", 1200),
                "content": "【示例商城】会员日全场八折，回T退订",
                "kind": "marketing",
            },
        ),
        Send(
            "notification to 3 (Deepfinch)",
            {
                "to": phones("136", 3),
                "template": "login_code",
                "params": {"code": "1357"},
                "provider": "deepfinch",
            },
        ),
        Send(
            "notification to 3 (Ihuyi, text)",
            {
                "to": phones("135", 3),
                "content": "您的快递已到驿站，请凭取件码8866领取。",
                "provider": "ihuyi",
            },
        ),
        Send(
            "international OTP (Tencent)",
            {"to": "+852 9123 4567", "template": "login_code", "params": {"code": "9753"}, "kind": "otp"},
        ),
        Send(
            "the first OTP's phone again (1 per 30 s)",
            {"to": "13800138000", "template": "login_code", "params": {"code": "864200"}, "kind": "otp"},
        ),
    ]


KEEP_ENV = ("SMSD_VENDOR_MODULES",)
"""``SMSD_*`` variables the demo passes on: code to load (plug-in vendors, which bring demo credentials of
their own), not settings that point anywhere."""


def demo_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with every ``SMSD_*`` setting replaced by the demo's: its credentials, pace, push tokens and
    config file. An operator's exported Redis, vendor URLs, credentials or config never reach the demo or
    the worker and beat it starts; the caller adds the Redis URL and the simulator's URLs."""
    env = {key: value for key, value in base.items() if not key.startswith("SMSD_") or key in KEEP_ENV}
    tokens = {f"SMSD_{name.upper()}__PUSH_TOKEN": token for name, token in DEMO_PUSH_TOKENS.items()}
    return {**env, **DEMO_ENV, **DEMO_SPEED, **tokens, "SMSD_CONFIG": str(DEMO_CONFIG)}


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside (settings reloaded), and what it was after."""
    from config.settings import get_settings

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


class _Shutdown:
    """Stops what the demo started, in the reverse order, saying what it stops and how long that took: a
    shutdown that hangs shows where, and Ctrl-C shows the same steps."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._begun = False

    def add(self, what: str, stop: Callable[[], object]) -> None:
        self._stack.callback(self._step, what, stop)

    def _step(self, what: str, stop: Callable[[], object]) -> None:
        if not self._begun:
            self._begun = True
            click.echo("\nshutting down")
        click.echo(f"  stopping {what} ...", nl=False)
        started = time.monotonic()
        try:
            stop()
        finally:
            click.echo(f" done ({time.monotonic() - started:.1f} s)")


def _start_redis(shutdown: _Shutdown, url: str | None, folder: Path) -> str:
    """The demo's own embedded Redis, or ``url`` when one was given with ``--redis-url`` (pinged first)."""
    if url:
        ping_redis(url, setting="--redis-url")
        click.echo(
            f"WARNING: the demo writes to your Redis at {masked_url(url)}: a worker of yours attached to it"
            " may take the demo's tasks and send them with its own vendor settings",
            err=True,
        )
        return url
    from worker.embedded import EmbeddedRedis

    server = EmbeddedRedis(str(folder / "redis"), durable=False)

    def discard() -> None:
        server.kill()  # nothing in it is kept, so no clean SHUTDOWN (redis-py retries it for seconds)
        server.close()

    shutdown.add("Redis (embedded; its data is deleted)", discard)
    return server.url


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.app", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log and log.exists() else []
            detail = ("; its log ends: " + " | ".join(tail)) if tail else ""
            raise click.ClickException(f"timed out waiting for {what}{detail}")
        time.sleep(0.1)


def run(recipients: int = 5000, timeout: float = 50.0, redis_url: str | None = None) -> None:
    """Run the demo; raise ClickException on failure. It runs on its own embedded Redis, simulator and
    settings whatever the environment holds; ``redis_url`` (``--redis-url``) is the one way to point it
    elsewhere."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="smsd-demo-")))
        env = demo_environment(os.environ)
        stack.enter_context(_environ(env))
        shutdown = _Shutdown(stack)
        env["SMSD_REDIS_URL"] = os.environ["SMSD_REDIS_URL"] = _start_redis(shutdown, redis_url, tmp)
        sim = _start_simulator(shutdown, env)
        api = _start_api(shutdown, sim)
        click.echo(f"redis     {masked_url(env['SMSD_REDIS_URL'])}\nsimulator {sim.url} (all five vendors)")
        click.echo(f"api       {api.url} (Ihuyi pushes its receipts to {api.url}/push/ihuyi/receipts)")
        queues = "sms.otp,sms.notify,sms.bulk,sms.poll"
        worker_log = tmp / "worker.log"
        worker = _spawn(
            ["worker", "-n", "demo@%h", "-c", "2", "-Q", queues, "--without-gossip", "--without-mingle"],
            env,
            worker_log,
        )
        shutdown.add("the worker (it finishes the tasks in hand)", lambda: _stop(worker))
        beat = _spawn(["beat", "-s", str(tmp / "beat-schedule")], env, tmp / "beat.log")
        shutdown.add("beat", lambda: _stop(beat))
        from worker.app import app

        _wait(lambda: bool(app.control.ping(timeout=0.5)), 30, "the worker to start", worker_log)
        sends = demo_sends(recipients)
        _send_all(sends, timeout)
        _report(sends, sim)
        _run_campaign(tmp, sim, timeout)
        click.echo(
            "\nThe demo runs faster than the vendors allow: receipts are pulled every second at up to 600"
            "\nqueries a minute and the simulator reports within half a second. Infocloud itself allows 3"
            "\nreceipt queries a minute (600 receipts each), and real receipts take minutes. Ihuyi offers"
            "\nno pull: it pushes its receipts to the HTTP app, which stores them; beat applies them."
            "\n'none': Deepfinch documents neither a receipt pull nor a push, so its sends stay submitted"
            "\n(and are failed NO_RECEIPT after its settle window)."
        )


CAMPAIGN_ROWS = 300


def _campaign_file(folder: Path) -> Path:
    """A recipient file as a spreadsheet exports it: a ``phone`` column and a column per template
    parameter, each row its own order and tracking number; then a repeated number and one that is not a
    number, which the intake counts as a duplicate and refuses with its line."""
    path = folder / "orders.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["phone", "order", "tracking"])
        rows.writerows([f"134{i:08d}", f"B{i:04d}", f"SF{7_000_000 + i}"] for i in range(CAMPAIGN_ROWS))
        rows.writerow(["13400000007", "B0007", "SF7000007"])
        rows.writerow(["1340000", "B9999", "SF0"])
    return path


def _run_campaign(folder: Path, sim: Any, timeout: float) -> None:
    """Submit the demo's campaign file as a campaign (the runner on beat's tick feeds it to Infocloud's
    per-recipient batch form), print its progress until its receipts are in, and its summary."""
    from config.settings import get_settings
    from worker.campaign.control import get_campaign, summary
    from worker.campaign.intake import CampaignSpec, submit
    from worker.store import Store, get_redis

    settings = get_settings()
    store = Store(get_redis(settings), settings)
    before = sim.state.stats()["vendors"]
    path = _campaign_file(folder)
    spec = CampaignSpec(name="demo: order shipped", template="order_shipped", kind="notify")
    with path.open("rb") as stream, (folder / "orders.rejects.csv").open("w", encoding="utf-8") as rejects:
        submitted = submit(stream, path.name, spec, settings, store, rejects)
    click.echo(
        f"\ncampaign {submitted.id} ({path.name}, each row its own order and tracking):"
        f" {submitted.rows:,} rows, {submitted.accepted:,} accepted, {submitted.duplicates:,} duplicate,"
        f" {submitted.rejected:,} refused"
    )
    for reject in submitted.rejects:
        click.echo(f"  refused line {reject.line} ({reject.phone}): {reject.reason}")
    started = time.monotonic()
    shown = ""
    while True:
        totals = summary(get_campaign(store, submitted.id))
        line = (
            f"{totals['status']:<9} not sent yet {totals['pending']:>4,}  submitted {totals['submitted']:>4,}"
            f"  delivered {totals['delivered']:>4,}  failed {totals['failed']:>3,}"
        )
        if line != shown:
            click.echo(f"  {time.monotonic() - started:5.1f}s  {line}")
            shown = line
        if totals["done"] and not totals["pending"] and not totals["submitted"]:  # every receipt in
            break
        if time.monotonic() - started > timeout:
            raise click.ClickException(f"campaign {submitted.id} not done in {timeout:.0f} s: {line}")
        time.sleep(0.5)
    parts = f"{totals['parts']:,} billed parts (planned {totals['planned_parts']:,})"
    click.echo(f"  summary: {totals['status']}, {totals['settled']:,} settled, {parts}")
    for name, now in sorted(sim.state.stats()["vendors"].items()):
        calls = now["calls"] - before.get(name, {}).get("calls", 0)
        if calls:
            phones = now["accepted"] - before.get(name, {}).get("accepted", 0)
            click.echo(f"  {name}: {calls:,} call(s) for {phones:,} phones")


def _start_simulator(shutdown: _Shutdown, env: dict[str, str]) -> Any:
    """The simulator in a thread, every vendor's URL pointed at it (in ``env`` and this process)."""
    from config.settings import PROVIDERS, get_settings
    from providers.simulator.server import SimulatorServer

    config = SimConfig(receipt_delay_s=0.5, undelivered_share=0.02, query_per_minute=600)
    sim = SimulatorServer(get_settings(), config).start()
    shutdown.add("the simulator", sim.stop)
    for name in PROVIDERS:
        env[f"SMSD_{name.upper()}__BASE_URL"] = os.environ[f"SMSD_{name.upper()}__BASE_URL"] = sim.url
    get_settings.cache_clear()
    from worker.app import app, configure
    from worker.logging import configure as configure_logging

    configure(app, get_settings())
    configure_logging(get_settings().log_level)  # the demo's WARNING: its own sends and intake log nothing
    return sim


def _start_api(shutdown: _Shutdown, sim: Any) -> Any:
    """The HTTP app in a thread, and the simulator told to push Ihuyi's receipts to it."""
    from dataclasses import replace

    from config.settings import get_settings
    from worker.http.server import ApiServer

    api = ApiServer(get_settings()).start()
    shutdown.add("the HTTP app", api.stop)
    urls = dict.fromkeys(PUSHED, api.url)
    sim.state.config = replace(sim.state.config, push_urls=urls, push_tokens=dict(DEMO_PUSH_TOKENS))
    return api


def _receipts_come(name: str) -> bool:
    """True when the vendor hands receipts over at all: by pull, or by push to the HTTP app."""
    from worker.registry import offers, pulls_receipts

    return pulls_receipts(name) or (name in PUSHED and offers(name, "parse_receipt_push"))


def _send_all(sends: list[Send], timeout: float) -> None:
    from config.settings import get_settings
    from tasks import send_sms
    from worker.store import Store, get_redis

    store = Store(get_redis(), get_settings())
    for send in sends:
        send.started = time.monotonic()
        send.message_id = send_sms.apply_async(kwargs=send.kwargs).id
    deadline = time.monotonic() + timeout
    pending = list(sends)
    while pending and time.monotonic() < deadline:
        for send in list(pending):
            if _progress(store, send):
                send.done = True
                pending.remove(send)
        time.sleep(0.1)


def _progress(store: Any, send: Send) -> bool:
    """Note when ``send`` was all submitted and settled; True once nothing more is to come for it."""
    counts = store.counts(send.message_id)
    total = sum(counts.values())
    if not total or counts["queued"] + counts["sending"] + counts["retry"]:
        return False
    send.submitted_at = send.submitted_at or time.monotonic()
    if sum(counts[s] for s in FINAL) == total:
        send.settled_at = time.monotonic()
        return True
    providers = store.message(send.message_id).get("providers", "").split(",")
    return not any(_receipts_come(name) for name in providers if name)  # no receipt will ever come


def _report(sends: list[Send], sim: Any) -> None:
    from celery.result import AsyncResult

    from config.settings import get_settings
    from worker.store import Store, get_redis

    store = Store(get_redis(), get_settings())
    vendors = sim.state.stats()["vendors"]
    header = (
        f"{'message':<42}{'accepted':>11}{'submitted':>10}{'delivered':>10}{'failed':>7}{'limited':>8}"
        f"{'to vendor':>10}{'settled':>9}"
    )
    click.echo("\n" + header + "\n" + "-" * len(header))
    for send in sends:
        counts = store.counts(send.message_id)
        accepted = AsyncResult(send.message_id).get(timeout=10)["accepted"]  # send_sms's own answer
        submitted = sum(counts[s] for s in ("submitted", "delivered", "failed"))
        click.echo(
            f"{send.label:<42}{accepted:>11,}{submitted:>10,}{counts['delivered']:>10,}"
            f"{counts['failed']:>7,}{counts['rate_limited']:>8,}{_secs(send, 'submitted_at'):>10}"
            f"{_secs(send, 'settled_at'):>9}"
        )
    click.echo(f"\n{'vendor':<12}{'calls':>7}{'phones':>9}{'largest call':>14}{'most to one phone':>19}")
    for name, v in sorted(vendors.items()):
        click.echo(
            f"{name:<12}{v['calls']:>7,}{v['accepted']:>9,}{v['max_call_size']:>14,}{v['max_per_phone']:>19}"
        )
    unsettled = [s.label for s in sends if not s.done]
    if unsettled:
        raise click.ClickException(f"not settled in time: {', '.join(unsettled)}")


def _secs(send: Send, attr: str) -> str:
    at = getattr(send, attr)
    if at:
        return f"{at - send.started:.2f}s"
    return "none" if attr == "settled_at" and send.submitted_at else "-"
