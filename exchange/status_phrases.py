"""Reason phrases for daphne's status lines.

daphne writes the status line with Twisted, whose phrase table (`twisted.web.http.RESPONSES`, a public
constant) stops at the codes of RFC 2616: our 422 and 429 went out as "422 Unknown Status". This adds
the phrase of every code Python's `http.HTTPStatus` knows and Twisted does not, once, at start-up.
Other servers (uvicorn) take their phrases from the same standard list.
"""

from __future__ import annotations

from http import HTTPStatus


def register_with_twisted() -> None:
    try:
        from twisted.web import http
    except ImportError:  # not served by daphne
        return
    for status in HTTPStatus:
        http.RESPONSES.setdefault(status.value, status.phrase.encode("ascii"))
