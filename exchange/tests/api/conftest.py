import time

import pytest

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
