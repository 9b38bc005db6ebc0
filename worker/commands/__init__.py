"""Further ``smsdispatch`` commands, one module per area (``api``, ``inbound``, ``optout``, ``vendors``, ...).

Each module defines click commands and registers them with ``register(main)``; ``worker/cli.py``
imports every module here, so adding a command group edits no shared file.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


def register_all(main: click.Group) -> None:
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(main)
