"""Campaign runs: feeding pages to the vendors, control (pause, resume, cancel), holds, the report."""

from __future__ import annotations

from worker.store.base import StoreBase


class CampaignRunMixin(StoreBase):
    pass
