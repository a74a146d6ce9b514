import time

import pytest
from django.test import Client

from matching.worker.metrics import METRICS


@pytest.fixture
def reset_metrics():
    """A function that empties METRICS once the matcher thread has finished recording the batches it
    answered (a batch's listener time is recorded after its callers have their replies)."""

    def reset() -> None:
        listeners, batches = METRICS.stage("matcher.listeners"), METRICS.stage("matcher.batch_size")
        deadline = time.monotonic() + 5
        while listeners.snapshot().count != batches.snapshot().count and time.monotonic() < deadline:
            time.sleep(0.001)
        METRICS.reset()

    return reset


@pytest.fixture
def alice(embedded, django_user_model, client):
    """A logged-in browser session (the embedded matcher running)."""
    client.force_login(django_user_model.objects.create_user("alice", password="pw"))
    return client


@pytest.fixture
def bob(embedded, django_user_model):
    other = Client()
    other.force_login(django_user_model.objects.create_user("bob", password="pw"))
    return other
