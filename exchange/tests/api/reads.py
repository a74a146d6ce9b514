"""Reads the API tests share."""

from __future__ import annotations


def shown(client, order_id: int) -> dict:
    """GET /api/orders/{id}: there at once after the answer that created or changed it (read-your-writes)."""
    response = client.get(f"/api/orders/{order_id}")
    assert response.status_code == 200, response.content
    return response.json()
