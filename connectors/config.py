"""Settings of one carrier's binds, as a frozen object built once at start-up.

Why a frozen msgspec Struct: the engine builds it from the TOML ``[[carriers]]``
table (``msgspec.convert(table, BindConfig)``, unknown keys ignored) and every
bind of the pool shares it; nothing changes it at run time. Invalid values are
refused here, at start-up, naming the key.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["BIND_MODES", "BindConfig", "ConfigError"]

BIND_MODES = ("transceiver", "transmitter+receiver", "transmitter", "receiver")


class ConfigError(ValueError):
    """A setting is invalid; the message names the key."""


class BindConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One carrier's SMPP binds (SMPP 3.4 §4.1 bind operations)."""

    name: str = "default"
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""  # never logged
    tls: bool = False  # SMPP over TLS; the certificate and the host name are verified
    ca_file: str = ""  # CA bundle that signs the carrier's certificate ("" = the system's)
    server_name: str = ""  # name the certificate must carry ("" = host)
    system_type: str = ""
    bind_mode: str = "transceiver"  # or "transmitter+receiver"
    binds: int = 1  # TRX binds, or TX+RX pairs
    window: int = 10  # requests in flight per bind
    enquire_link_s: float = 30.0  # keepalive after this long without traffic; 0 = off
    response_timeout_s: float = 30.0
    bind_timeout_s: float = 10.0  # connect + bind_resp
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    auth_retry_s: float = 300.0  # after a bind refused for credentials (0x0D/0x0E/0x0F)
    drain_timeout_s: float = 5.0  # on close: wait this long for in-flight responses
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    interface_version: int = 0x34
    sweep_interval_s: float = 0.5  # how often a bind checks timeouts and keepalive

    def __post_init__(self) -> None:
        _check(self.bind_mode in BIND_MODES, "bind", f"must be one of {BIND_MODES}")
        _check(1 <= self.binds <= 64, "binds", "must be 1..64")
        _check(1 <= self.window <= 65535, "window", "must be 1..65535")
        _check(0 <= self.port <= 65535, "port", "must be 0..65535")
        _check(len(self.system_id) <= 15, "system_id", "at most 15 characters (SMPP 3.4 §4.1.1)")
        _check(len(self.password) <= 8, "password", "at most 8 characters (SMPP 3.4 §4.1.1)")
        _check(len(self.system_type) <= 12, "system_type", "at most 12 characters")
        _check(self.response_timeout_s > 0, "response_timeout_s", "must be > 0")
        _check(self.bind_timeout_s > 0, "bind_timeout_s", "must be > 0")
        _check(
            0 < self.reconnect_min_s <= self.reconnect_max_s,
            "reconnect_min_s",
            "must be > 0 and <= reconnect_max_s",
        )
        _check(self.auth_retry_s > 0, "auth_retry_s", "must be > 0")
        _check(self.drain_timeout_s >= 0, "drain_timeout_s", "must be >= 0")
        _check(self.sweep_interval_s > 0, "sweep_interval_s", "must be > 0")
        _check(self.tls or not (self.ca_file or self.server_name), "ca_file", "needs tls = true")

    @classmethod
    def from_carrier(cls, table: dict[str, Any]) -> BindConfig:
        """Build from a ``[[carriers]]`` TOML table (key ``bind`` is ``bind_mode``)."""
        data = dict(table)
        if "bind" in data and "bind_mode" not in data:
            data["bind_mode"] = data.pop("bind")
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            name = data.get("name", "?")
            raise ConfigError(f"carriers[{name}]: {exc}") from None

    def __repr__(self) -> str:  # the password never appears in logs or tracebacks
        return (
            f"BindConfig(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"system_id={self.system_id!r}, bind_mode={self.bind_mode!r}, "
            f"binds={self.binds}, window={self.window}, tls={self.tls})"
        )


def _check(ok: bool, key: str, reason: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {reason}")
