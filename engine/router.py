"""Longest-prefix routing of a destination number to a carrier.

Each carrier lists destination prefixes (``routes``); ``""`` is the default
route. A job may force a carrier by name. Lookup is one dict probe per
distinct prefix length, longest first — a few probes, no scan of the table.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Router", "RoutingError"]


class RoutingError(LookupError):
    """No carrier for a destination (``code`` is the dead-letter code)."""

    code = "unknown_carrier"


class Router:
    """Maps a number (digits) to a carrier name."""

    __slots__ = ("_by_prefix", "_carriers", "_fallback", "_lengths")

    def __init__(self, routes: Iterable[tuple[str, Iterable[str]]], fallbacks: dict[str, str] | None = None) -> None:
        by_prefix: dict[str, str] = {}
        carriers: set[str] = set()
        for carrier, prefixes in routes:
            carriers.add(carrier)
            for p in prefixes:
                by_prefix.setdefault(p.lstrip("+"), carrier)  # first carrier to claim a prefix wins
        self._by_prefix = by_prefix
        self._lengths = sorted({len(p) for p in by_prefix}, reverse=True)
        self._carriers = frozenset(carriers)
        self._fallback = dict(fallbacks or {})

    def route(self, number: str, forced: str = "") -> str:
        """The carrier for ``number`` (digits), or ``forced`` when it names a known carrier."""
        if forced:
            if forced in self._carriers:
                return forced
            raise RoutingError("field 'carrier' names no configured carrier")
        by_prefix = self._by_prefix
        for n in self._lengths:
            carrier = by_prefix.get(number[:n])
            if carrier is not None:
                return carrier
        raise RoutingError("no route matches the destination")

    def fallback(self, carrier: str) -> str:
        """The carrier's fallback, or ``""``."""
        return self._fallback.get(carrier, "")

    def __contains__(self, carrier: object) -> bool:
        return carrier in self._carriers
