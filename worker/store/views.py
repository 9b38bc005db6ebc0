"""Read-only views for status screens and the API: recipients page by page, by state or phone."""

from __future__ import annotations

from worker.store.base import StoreBase


class ViewsMixin(StoreBase):
    pass
