"""What ``smsdispatch simulator`` does: serve every vendor's API on one port, demo credentials only.

It says so at start (which credentials, and the code each vendor answers any other), and names each
``SMSD_*`` credential it found set to something else and ignores, so an operator who exported real keys
sees that they do not work here rather than finding out from refused sends.
"""

from __future__ import annotations

import os

import click

from config.settings import Settings
from providers.simulator import demo_only_lines, ignored_credentials
from providers.simulator.core import SimConfig, SimState


def serve(
    settings: Settings,
    host: str,
    port: int,
    receipt_delay: float,
    undelivered: float,
    pushes: tuple[str, ...],
    query_per_minute: int = 3,
) -> None:
    """Print the start-up lines and run the simulator with uvicorn until stopped."""
    import uvicorn

    from providers.simulator.app import build_app
    from providers.simulator.server import quiet_uvicorn

    urls, tokens = push_targets(settings, pushes)
    for line in demo_only_lines():
        click.echo(line)
    for key in ignored_credentials(dict(os.environ)):
        click.echo(f"WARNING: {key} is set and ignored: it is not the demo credential", err=True)
    for vendor, url in urls.items():
        click.echo(f"{vendor} pushes its receipts and replies to {url}/push/{vendor}/...")
    click.echo(f"point SMSD_<VENDOR>__BASE_URL at http://{host}:{port}")
    config = SimConfig(
        receipt_delay_s=receipt_delay,
        undelivered_share=undelivered,
        push_urls=urls,
        push_tokens=tokens,
        query_per_minute=query_per_minute,
    )
    quiet_uvicorn()
    uvicorn.run(build_app(settings, SimState(config)), host=host, port=port, log_level="warning")


def push_targets(settings: Settings, pushes: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """``--push VENDOR=URL`` values as the simulator's push URLs and tokens (``SMSD_<VENDOR>__PUSH_TOKEN``,
    which our receivers check); a bad value stops the command in one line naming it."""
    from config.sections import check_http_url
    from providers.vendors import VENDORS

    urls, tokens = {}, {}
    for value in pushes:
        vendor, _, url = value.partition("=")
        if vendor not in VENDORS:
            known = ", ".join(VENDORS)
            raise click.BadParameter(f"{value!r}: unknown vendor {vendor!r} ({known})", param_hint="--push")
        try:
            urls[vendor] = check_http_url(url)
        except ValueError as exc:
            raise click.BadParameter(f"{value!r}: the URL {exc}", param_hint="--push") from None
        token = settings.vendor(vendor).push_token.get_secret_value()
        if token:
            tokens[vendor] = token
    return urls, tokens
