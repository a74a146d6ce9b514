"""Component health for `/health`: the database, and the matcher and projector once this process has
started them (each with its own detail: seq, queue depth, error), and the demo market maker when it
runs (reported, not required). Shard heartbeats over Redis and the channel layer come with their issues."""

import logging

from django.db import DatabaseError, connection

log = logging.getLogger(__name__)

OK = "ok"
ERROR = "error"


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        log.warning("health: database query failed", exc_info=True)
        return ERROR
    return OK


def health_report() -> dict[str, object]:
    """Overall status plus one entry per component (a status, or a detail dict with a "status");
    overall is OK only when every component is."""
    from matching.services import command_bus_health  # the matcher's glue imports models

    components: dict[str, object] = {"database": database_status(), **command_bus_health()}
    healthy = all(
        (entry.get("status") if isinstance(entry, dict) else entry) == OK for entry in components.values()
    )
    from exchange.marketmaker.runner import health as marketmaker_health

    maker = marketmaker_health()  # reported, never required: without it trading goes on (DESIGN)
    if maker is not None:
        components["marketmaker"] = maker
    return {"status": OK if healthy else ERROR, "components": components}
