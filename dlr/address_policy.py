"""Which hosts a callback may reach: public unicast addresses only, unless allowed.

Why: a job's ``callback`` is a URL chosen by whoever can push jobs. Without
a rule, the engine would POST (signed) to whatever it names — the Redis
next door, a cloud metadata service at 169.254.169.254, the admin port on
127.0.0.1 (server-side request forgery). So by default a callback must
reach a public unicast address; ``[webhooks] allow_private = true`` lifts
the rule for operators whose receivers live on a private network.

Two checks, one rule:

- at job validation (:func:`callback_host_refusal`, pure, no DNS, cached per
  host): a literal IP that is loopback, link-local, private, multicast,
  reserved or unspecified, and names that can only be local (``localhost``,
  ``*.localhost``, ``*.local``, ``*.internal``, ``*.localdomain``, a name
  without a dot) are refused at once, as dead letter ``invalid``;
- at connect time (:func:`refused_address`, used by the webhook sender's
  resolver on every address a name resolves to): the authoritative check,
  done after DNS so a name that resolved to a public address at validation
  and to 127.0.0.1 later (DNS rebinding) is still refused.

Nothing here does I/O; messages never repeat the URL or its path.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

__all__ = ["callback_host_refusal", "refused_address"]

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")


def refused_address(address: str) -> str | None:
    """Why the IP ``address`` may not be called back, or ``None`` if it is public unicast.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as its IPv4
    address; a string that is not an IP is refused.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        # is_private covers 10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10 (shared)…
        return "a private or reserved address"
    return None


@lru_cache(maxsize=4096)
def callback_host_refusal(host: str) -> str | None:
    """Why a callback to ``host`` (a URL's hostname) is refused without DNS, or ``None``.

    Literal IPs are judged by :func:`refused_address`; names that can only be
    local are refused; any other name passes here and is checked again after
    resolution, at connect time.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        return "no host"
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    else:
        reason = refused_address(name)
        return f"callback host is {reason}" if reason else None
    if name == "localhost" or name.endswith(_LOCAL_SUFFIXES):
        return "callback host is a local name"
    if "." not in name:
        return "callback host is a single-label (local) name"
    return None
