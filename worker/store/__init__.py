"""The one owner of recipient state in Redis: records, claims, receipts, events, leases and sweeps.

Everything else calls :class:`Store`'s typed methods; the record format, the keys and the Lua scripts
(``lua/``) are private to this package. See ``records.py`` for the format, ``keys.py`` for the keys.
"""

from __future__ import annotations

from worker.store.campaign_run import CampaignRunMixin
from worker.store.campaigns import CampaignsMixin
from worker.store.client import get_redis
from worker.store.inbound import InboundMixin
from worker.store.inbox import InboxMixin
from worker.store.keys import Keys
from worker.store.receipts import ReceiptsMixin, final_state
from worker.store.recipients import Claim, Outcome, RecipientsMixin, Recording, window_bucket
from worker.store.records import FINAL, NO_RECORD, UNSETTLED, Record, State, now_ms
from worker.store.sweeps import SweepsMixin
from worker.store.vendors import VendorsMixin
from worker.store.views import ViewsMixin
from worker.store.webhooks import WebhooksMixin

__all__ = [
    "FINAL",
    "NO_RECORD",
    "UNSETTLED",
    "Claim",
    "Keys",
    "Outcome",
    "Record",
    "Recording",
    "State",
    "Store",
    "final_state",
    "get_redis",
    "now_ms",
    "window_bucket",
]


class Store(
    RecipientsMixin,
    ReceiptsMixin,
    SweepsMixin,
    InboundMixin,
    WebhooksMixin,
    InboxMixin,
    VendorsMixin,
    CampaignsMixin,
    CampaignRunMixin,
    ViewsMixin,
):
    """State operations for one Redis client and its settings. Each method is one round trip unless
    its docstring says otherwise."""
