"""What Django's debug page (DEBUG on, the demo default) may show of the settings.

Django masks settings whose names look secret (KEY, TOKEN, PASS, ...). Ours also carry passwords in
URLs (DATABASE_URL, REDIS_URL, the cache and channel-layer locations), so those are masked too.
"""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class ExchangeReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DATABASE|REDIS|CACHES|CHANNEL_LAYERS|ENV",
        flags=re.IGNORECASE)
