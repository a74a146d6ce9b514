"""Fixtures for the Django side of risk (the pure core's tests are in core/, with their own)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fast_settings(settings):
    """Render admin pages without collectstatic, hash passwords cheaply (as exchange/tests does)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def risk_matcher(embedded, fast_settings):
    """The embedded matcher with its risk stage configured from the database (`worker_config()`), as
    the web tier starts it. Skips while the matcher has no risk stage."""
    from matching import services
    from risk.config import worker_config
    from risk.core import AdminApplied

    bus = services.command_bus()
    replies = [bus.submit(cmd, timeout=5) for cmd in worker_config()]
    if not any(isinstance(event, AdminApplied) for event in replies[0].events):
        pytest.skip("needs the risk stage in the matcher (lead)")
    return bus

