"""Bulk campaigns: a recipient file submitted as a job (``files``, ``intake``), fed to the vendors at their
pace and controlled while it runs (``control``, ``tasks/campaign.py``). See README "Campaigns"."""
