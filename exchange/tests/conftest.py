import pytest


@pytest.fixture(autouse=True)
def _fast_test_settings(settings):
    """Render templates without running collectstatic first, and hash passwords cheaply."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
