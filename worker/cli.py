"""The ``smsdispatch`` command: demo, worker, beat, simulator, status."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from config.settings import SettingsError, get_settings

ALL_QUEUES = "sms.otp,sms.notify,sms.bulk,sms.poll"


def _settings_or_exit() -> None:
    try:
        get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _redis_or_exit() -> None:
    """Stop with one line naming SMSD_REDIS_URL when Redis cannot be reached (``worker.preflight``)."""
    from worker.preflight import check_redis

    check_redis(get_settings())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """smsdispatch: SMS dispatch for Chinese SMS vendors on Celery and Redis."""


@main.command()
@click.option("--recipients", default=5000, show_default=True, help="size of the bulk notification")
@click.option("--timeout", default=50.0, show_default=True, help="seconds to wait for receipts")
def demo(recipients: int, timeout: float) -> None:
    """Run the whole system locally (embedded Redis, simulator, worker, beat) and print a summary."""
    from worker.demo import run

    _settings_or_exit()
    run(recipients, timeout)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("-Q", "--queues", default=ALL_QUEUES, show_default=True)
@click.option("-c", "--concurrency", type=int, default=None, help="worker processes (default: CPU count)")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, concurrency: int | None, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker on the given queues (all by default). Extra arguments go to Celery."""
    _settings_or_exit()
    _redis_or_exit()
    from worker.app import app

    argv = ["worker", "-Q", queues, *(["-c", str(concurrency)] if concurrency else []), *celery_args]
    app.worker_main(argv)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run the beat schedule (receipts at each vendor's cadence, deferred retries, the settle sweep)."""
    _settings_or_exit()
    _redis_or_exit()
    from worker.app import app

    app.start(["beat", *celery_args])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8800, show_default=True)
@click.option("--receipt-delay", default=1.0, show_default=True, help="seconds before a receipt is ready")
@click.option("--undelivered", default=0.02, show_default=True, help="share of receipts that say undelivered")
@click.option("--push", "pushes", multiple=True, metavar="VENDOR=URL",
              help="push VENDOR's receipts to our HTTP app at URL (ihuyi=http://api:8000); repeatable")
def simulator(
    host: str, port: int, receipt_delay: float, undelivered: float, pushes: tuple[str, ...]
) -> None:
    """Serve the five vendor APIs on one port. Demo-only: it accepts the demo credentials and refuses any
    other with the vendor's own code, whatever SMSD_* credentials are set."""
    from providers.simulator.command import serve

    _settings_or_exit()
    serve(get_settings(), host, port, receipt_delay, undelivered, pushes)


@main.command()
@click.argument("message_id")
@click.option("--recipients", "show", is_flag=True, help="list every recipient (phones masked)")
def status(message_id: str, show: bool) -> None:
    """Show a message's recipients by state (and each recipient with --recipients)."""
    _settings_or_exit()
    _redis_or_exit()
    from providers.phones import mask
    from worker.store import Store, get_redis

    store = Store(get_redis(), get_settings())
    meta = store.message(message_id)
    counts = store.counts(message_id)
    if not meta and not counts:
        raise click.ClickException(f"no message {message_id} (unknown, or older than the retention)")
    for key in ("kind", "template", "providers", "recipients", "chunks"):
        click.echo(f"{key:<11}{meta.get(key, '')}")
    if meta.get("created_ms"):
        created = datetime.fromtimestamp(int(meta["created_ms"]) / 1000, UTC).isoformat(timespec="seconds")
        click.echo(f"{'created':<11}{created}")
    click.echo("")
    for state_name, n in counts.most_common():
        click.echo(f"{state_name:<14}{n:>9,}")
    records = store.records(message_id)
    billed = [rec.fee for rec in records.values() if rec.fee is not None]
    if billed:
        click.echo(f"{'billed':<14}{sum(billed):>9,} segments (reported for {len(billed):,} recipients)")
    if show:
        click.echo("")
        for phone, rec in sorted(records.items()):
            when = datetime.fromtimestamp(rec.updated_ms / 1000, UTC).strftime("%H:%M:%S")
            click.echo(f"{mask(phone):<16}{rec.state:<13}{rec.provider:<10}{rec.code:<10}{when}  {rec.text}")


def _register_commands() -> None:
    from worker.commands import register_all

    register_all(main)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
