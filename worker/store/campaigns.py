"""Campaign intake: the campaign's meta, its pages of recipients (deduplicated), its index."""

from __future__ import annotations

from worker.store.base import StoreBase


class CampaignsMixin(StoreBase):
    pass
