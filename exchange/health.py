"""Component health for `/health`. Only the database so far; shards, channel layer and journal come later."""

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
    """Overall status plus one status per component; overall is OK only when every component is."""
    components = {"database": database_status()}
    healthy = all(status == OK for status in components.values())
    return {"status": OK if healthy else ERROR, "components": components}
