"""Marketing guardrails per client: the opt-out footer and quiet hours.

Why a module of its own, sans-IO: both are decisions on one job with the
clock passed in, made in the pipeline's decode step for ``kind=marketing``
jobs of a client that configured them (docs/contract.md §5, ``[[clients]]
footer`` / ``quiet_hours``), before segmentation — so the footer is counted
in the parts the client is billed for, and a held job never takes a window
slot.

Footer: appended unless the text (trailing whitespace ignored) already ends
with it; joined with a newline unless the footer starts with whitespace of
its own.

Quiet hours: ``"21:00-08:00"`` in the *recipient's* local time; a window
whose start is after its end wraps midnight (equal ends are refused by the
config). The
recipient's time zone comes from the number's country calling code
(ITU-T E.164, longest prefix) through :data:`ZONES`, one representative IANA
zone per country: an approximation for countries that span several zones
(NANP ``1`` → New York, ``7`` → Moscow, ``61`` → Sydney, ``55`` → São Paulo,
``52`` → Mexico City…), where a recipient may be an hour or more off. A
number of a country not in the table is taken to be in UTC. A job inside the
window is held until its end (in the existing scheduled set), never dropped.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["ZONES", "QuietHours", "with_footer", "zone_of"]

#: Country calling code → a representative IANA zone (see the module docstring).
ZONES: dict[str, str] = {
    "1": "America/New_York", "7": "Europe/Moscow", "20": "Africa/Cairo", "27": "Africa/Johannesburg",
    "30": "Europe/Athens", "31": "Europe/Amsterdam", "32": "Europe/Brussels", "33": "Europe/Paris",
    "34": "Europe/Madrid", "36": "Europe/Budapest", "39": "Europe/Rome", "40": "Europe/Bucharest",
    "41": "Europe/Zurich", "43": "Europe/Vienna", "44": "Europe/London", "45": "Europe/Copenhagen",
    "46": "Europe/Stockholm", "47": "Europe/Oslo", "48": "Europe/Warsaw", "49": "Europe/Berlin",
    "51": "America/Lima", "52": "America/Mexico_City", "53": "America/Havana", "54": "America/Argentina/Buenos_Aires",
    "55": "America/Sao_Paulo", "56": "America/Santiago", "57": "America/Bogota", "58": "America/Caracas",
    "60": "Asia/Kuala_Lumpur", "61": "Australia/Sydney", "62": "Asia/Jakarta", "63": "Asia/Manila",
    "64": "Pacific/Auckland", "65": "Asia/Singapore", "66": "Asia/Bangkok", "81": "Asia/Tokyo",
    "82": "Asia/Seoul", "84": "Asia/Ho_Chi_Minh", "86": "Asia/Shanghai", "90": "Europe/Istanbul",
    "91": "Asia/Kolkata", "92": "Asia/Karachi", "93": "Asia/Kabul", "94": "Asia/Colombo", "95": "Asia/Yangon",
    "98": "Asia/Tehran", "212": "Africa/Casablanca", "213": "Africa/Algiers", "216": "Africa/Tunis",
    "234": "Africa/Lagos", "254": "Africa/Nairobi", "255": "Africa/Dar_es_Salaam", "256": "Africa/Kampala",
    "298": "Atlantic/Faroe", "299": "America/Nuuk", "351": "Europe/Lisbon", "352": "Europe/Luxembourg",
    "353": "Europe/Dublin", "354": "Atlantic/Reykjavik", "355": "Europe/Tirane", "356": "Europe/Malta",
    "357": "Asia/Nicosia", "358": "Europe/Helsinki", "359": "Europe/Sofia", "370": "Europe/Vilnius",
    "371": "Europe/Riga", "372": "Europe/Tallinn", "380": "Europe/Kyiv", "381": "Europe/Belgrade",
    "385": "Europe/Zagreb", "386": "Europe/Ljubljana", "420": "Europe/Prague", "421": "Europe/Bratislava",
    "852": "Asia/Hong_Kong", "886": "Asia/Taipei", "880": "Asia/Dhaka", "966": "Asia/Riyadh",
    "971": "Asia/Dubai", "972": "Asia/Jerusalem", "974": "Asia/Qatar",
}
_UTC = dt.UTC


def with_footer(text: str, footer: str) -> str:
    """``text`` with ``footer`` appended, unless it already ends with it."""
    if not footer or text.rstrip().endswith(footer.strip()):
        return text
    return text + footer if footer[:1].isspace() else text + "\n" + footer


@lru_cache(maxsize=1024)
def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # a system without that zone: UTC rather than fail the job
        return _UTC


def zone_of(number: str) -> dt.tzinfo:
    """The time zone of an E.164 number (digits, ``+`` allowed), by :data:`ZONES`; UTC if unknown."""
    digits = number.lstrip("+")
    for n in (3, 2, 1):
        name = ZONES.get(digits[:n])
        if name is not None:
            return _zone(name)
    return _UTC


class QuietHours:
    """A window ``"HH:MM-HH:MM"`` of local time in which marketing is held."""

    __slots__ = ("end", "start")

    def __init__(self, window: str) -> None:
        start, _, end = window.partition("-")
        self.start = dt.time(int(start[:2]), int(start[3:5]))
        self.end = dt.time(int(end[:2]), int(end[3:5]))

    def _inside(self, t: dt.time) -> bool:
        if self.start <= self.end:  # (equal ends: an empty window; the config refuses it)
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def until(self, number: str, now_s: float) -> float | None:
        """Unix seconds when the window ends for the recipient ``number``, or None
        when ``now_s`` is outside it (send now)."""
        tz = zone_of(number)
        local = dt.datetime.fromtimestamp(now_s, tz)
        if not self._inside(local.time()):
            return None
        ends = dt.datetime.combine(local.date(), self.end, tz)
        if ends <= local:
            ends = dt.datetime.combine(local.date() + dt.timedelta(days=1), self.end, tz)
        return ends.timestamp()
