"""The ``smsdispatch`` command: demo, worker, beat, simulator; further commands in ``worker/commands/``.

Every command ends in one line on error, with an exit code a script can trust (``worker.console``):
the group turns anything a command let escape into one line (exit 1, or 5 when Redis or the broker is out
of reach); ``--debug`` or SMSD_LOG_LEVEL=DEBUG shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from config.settings import get_settings
from worker.console import (
    EXIT_CODES,
    BadInput,
    Failed,
    Unreachable,
    debugging,
    one_line,
    require_redis,
    require_settings,
)

ALL_QUEUES = "sms.otp,sms.notify,sms.bulk,sms.poll"


def _infrastructure(exc: BaseException) -> bool:
    """Redis or the broker out of reach (after the clients' own retries)."""
    import redis
    from kombu.exceptions import OperationalError

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OperationalError)


class Cli(click.Group):
    """The command group: what a command lets escape ends in one line with an exit code, not a
    traceback (an operator reads the line; a script reads the code)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a command's own: one line too, not click's usage block
            if exc.ctx is None:
                raise
            raise BadInput(f"{exc.format_message()} (see: {exc.ctx.command_path} --help)") from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click prints these (a closed pipe, as in `... | head`, quietly)
        except Exception as exc:
            if debugging():
                raise
            if _infrastructure(exc):
                raise Unreachable(f"Redis or the broker cannot be reached: {one_line(exc)}") from None
            raise Failed(f"{type(exc).__name__}: {one_line(exc)} (--debug shows the traceback)") from None


_EPILOG = "\b\nExit codes (every command; errors are one line on stderr):\n" + "\n".join(
    f"  {code}  {text}" for code, text in EXIT_CODES.items()
)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.version_option(package_name="smsdispatch", prog_name="smsdispatch", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="show the traceback of an error (as SMSD_LOG_LEVEL=DEBUG)")
def main(debug: bool) -> None:
    """smsdispatch: SMS dispatch for Chinese SMS vendors on Celery and Redis.

    \b
    Examples:
      smsdispatch send 13800138000 -t login_code -p code=123456 --kind otp --wait 30
      smsdispatch status MESSAGE_ID --state failed
      smsdispatch campaign submit customers.csv -t bill --dry-run
      smsdispatch campaign submit customers.csv -t bill --follow
    """


@main.command()
@click.option("--recipients", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="size of the bulk notification")
@click.option("--timeout", default=50.0, show_default=True, type=click.FloatRange(1, 3600),
              help="seconds to wait for receipts")
@click.option("--redis-url", default=None, help="this Redis, not the demo's own (SMSD_REDIS_URL is ignored)")
def demo(recipients: int, timeout: float, redis_url: str | None) -> None:
    """Run the whole system locally (embedded Redis, simulator, worker, beat) and print a summary.

    It runs with its own settings: SMSD_* variables and the config file of the environment are ignored."""
    from worker.demo import run

    run(recipients, timeout, redis_url)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("-Q", "--queues", default=ALL_QUEUES, show_default=True)
@click.option("-c", "--concurrency", type=int, default=None, help="worker processes (default: CPU count)")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="serve the metrics of all this worker's processes on this port (README \"Metrics\")")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    queues: str, concurrency: int | None, metrics_port: int | None, celery_args: tuple[str, ...]
) -> None:
    """Run a Celery worker on the given queues (all by default). Extra arguments go to Celery."""
    require_settings()
    require_redis()
    from worker.metrics import MetricsSetupError, prepare_worker

    try:
        prepare_worker(metrics_port)  # before Celery forks: its processes' metrics share one directory
    except MetricsSetupError as exc:
        raise click.ClickException(str(exc)) from None
    _announce()
    from worker.app import app

    argv = ["worker", "-Q", queues, *(["-c", str(concurrency)] if concurrency else []), *celery_args]
    app.worker_main(argv)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run the beat schedule (receipts at each vendor's cadence, deferred retries, the settle sweep)."""
    require_settings()
    require_redis()
    _announce()
    from worker.app import app

    app.start(["beat", *celery_args])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8800, show_default=True)
@click.option("--receipt-delay", default=1.0, show_default=True, help="seconds before a receipt is ready")
@click.option("--undelivered", default=0.02, show_default=True, help="share of receipts that say undelivered")
@click.option("--push", "pushes", multiple=True, metavar="VENDOR=URL",
              help="push VENDOR's receipts to our HTTP app at URL (ihuyi=http://api:8000); repeatable")
@click.option("--query-per-minute", default=3, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Infocloud receipt queries allowed a minute (its document: 3); match the workers' setting")
def simulator(
    host: str,
    port: int,
    receipt_delay: float,
    undelivered: float,
    pushes: tuple[str, ...],
    query_per_minute: int,
) -> None:
    """Serve the five vendor APIs on one port. Demo-only: it accepts the demo credentials and refuses any
    other with the vendor's own code, whatever SMSD_* credentials are set."""
    from providers.simulator.command import serve

    require_settings()
    serve(get_settings(), host, port, receipt_delay, undelivered, pushes, query_per_minute)


def _announce() -> None:
    """Print what the process starts with: config file, templates, each vendor (``worker.preflight``)."""
    from worker.preflight import announce

    announce(get_settings())


def _register_commands() -> None:
    from worker.commands import register_all

    register_all(main)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
