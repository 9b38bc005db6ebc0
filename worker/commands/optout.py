"""``smsdispatch optout list|add|remove|check``: the one opt-out list every send of an honouring kind
checks (``settings.optout.kinds``; notify and marketing by default, OTPs exempt)."""

from __future__ import annotations

import json
import sys

import click

from providers.phones import mask
from worker.commands.inbound import parse_phone, store, utc

NOT_OPTED_OUT = 3  # ``check``'s exit code when the number may be sent to (1 is an error, 2 a usage error)


def register(main: click.Group) -> None:
    main.add_command(optout)


@click.group()
def optout() -> None:
    """The opt-out list: numbers that replied an opt-out word (or were added here) get no notify or
    marketing message (settings.optout.kinds) until they reply an opt-in word or are removed here.

    PHONE takes any spelling send_sms accepts (13800138000, +86 138 0013 8000, +85291234567).
    Exit codes: 0 ok, 1 error (one line), 2 usage; `check` exits 0 when the number is opted out and
    3 when it is not.
    """


@optout.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--unmask", is_flag=True, help="show whole phone numbers (masked by default)")
def list_(as_json: bool, unmask: bool) -> None:
    """Every opted-out number: since when (UTC), through which vendor, how (reply or cli), the word."""
    entries = store().optouts()
    for entry in entries:
        phone = entry.phone if unmask else mask(entry.phone)
        if as_json:
            data = {"phone": phone, "since": utc(entry.at_ms), "since_ms": entry.at_ms,
                    "provider": entry.provider, "source": entry.source, "word": entry.word}
            click.echo(json.dumps(data, ensure_ascii=False))
        else:
            word = f"  {entry.word!r}" if entry.word else ""
            how = f"{entry.provider or '-':<10}{entry.source or '-':<6}"
            click.echo(f"{phone:<16}{utc(entry.at_ms):<27}{how}{word}")
    if not as_json:
        click.echo(f"{len(entries)} opted out", err=True)


@optout.command()
@click.argument("phone")
def add(phone: str) -> None:
    """Opt PHONE out (it gets no message of an honouring kind from now on)."""
    number = parse_phone(phone)
    added = store().add_optout(number)
    click.echo(f"{number}: opted out" if added else f"{number}: already opted out")


@optout.command()
@click.argument("phone")
def remove(phone: str) -> None:
    """Take PHONE off the list (messages of every kind reach it again)."""
    number = parse_phone(phone)
    removed = store().remove_optout(number)
    click.echo(f"{number}: removed" if removed else f"{number}: was not opted out")


@optout.command()
@click.argument("phone")
def check(phone: str) -> None:
    """Exit 0 and say since when if PHONE is opted out; exit 3 if it is not (1 on error)."""
    number = parse_phone(phone)
    entry = store().optout(number)
    if entry is None:
        click.echo(f"{number}: not opted out")
        sys.exit(NOT_OPTED_OUT)
    how = f" through {entry.provider}" if entry.provider else ""
    click.echo(f"{number}: opted out since {utc(entry.at_ms)}{how} ({entry.source or 'unknown'})")
