"""The simulator's ASGI app: every registered vendor under the paths its real API uses, plus ``/_sim/*``
controls.

Controls (JSON): ``GET /_sim/stats`` counters per vendor; ``GET /_sim/calls?vendor=`` each accepted send
call's arrival time (unix s) and tag (Infocloud: the bid), for rate checks; ``POST /_sim/faults``
``{"vendor": {plan}}`` (see :class:`FaultPlan`; ``null`` clears); ``POST /_sim/config`` fields of
:class:`SimConfig`; ``POST /_sim/reset`` clears counters, queues and faults; ``POST /_sim/inbound``
``{"vendor", ...}`` queues a reply (MO) for vendors that offer inbound (``phone``, ``content``).

Vendors that push do so from a background thread (``pusher.py``, ``app.state.pusher``) once
``SimConfig.push_urls`` names our receivers for them.
"""

from __future__ import annotations

import importlib
from dataclasses import fields, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from config.settings import Settings
from providers.simulator import demo_settings
from providers.simulator.core import FaultPlan, SimConfig, SimState
from providers.simulator.pusher import start_pusher
from providers.vendors import VENDORS


def vendor_sims(settings: Settings, state: SimState) -> dict[str, Any]:
    """One simulator per registered vendor, accepting the demo credentials and no other (whatever
    ``settings`` holds: ``providers.simulator.demo_settings``).

    Each vendor's descriptor names its simulator module (``VendorDescriptor.simulator``), which has
    ``build(state, settings)`` returning an object with ``routes()``.
    """
    demo = demo_settings(settings)
    return {
        name: importlib.import_module(vendor.simulator).build(state, demo)
        for name, vendor in VENDORS.items()
    }


def build_app(settings: Settings, state: SimState | None = None) -> Starlette:
    state = state or SimState()
    sims = vendor_sims(settings, state)
    routes: list[BaseRoute] = [route for sim in sims.values() for route in sim.routes()]
    routes += _control_routes(state)
    app = Starlette(routes=routes)
    app.state.sim = state
    app.state.vendors = sims
    app.state.pusher = start_pusher(state, sims)
    return app


def _control_routes(state: SimState) -> list[Route]:
    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(state.stats())

    async def calls(request: Request) -> JSONResponse:
        return JSONResponse({"calls": state.arrivals(request.query_params.get("vendor", ""))})

    async def faults(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        for vendor, plan in body.items():
            state.set_faults(vendor, None if plan is None else FaultPlan.from_dict(plan))
        return JSONResponse({"ok": True})

    async def config(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        known = {f.name for f in fields(SimConfig)}
        unknown = sorted(set(body) - known)
        if unknown:
            return JSONResponse({"error": f"unknown settings: {', '.join(unknown)}"}, status_code=400)
        if "known_templates" in body:
            body["known_templates"] = tuple(body["known_templates"])
        state.config = replace(state.config, **body)
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"ok": True})

    async def inbound(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        state.add_inbound(str(body.pop("vendor")), body)
        return JSONResponse({"ok": True})

    return [
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/calls", calls, methods=["GET"]),
        Route("/_sim/faults", faults, methods=["POST"]),
        Route("/_sim/config", config, methods=["POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/inbound", inbound, methods=["POST"]),
    ]
