"""Settings: one TOML file, loaded once into frozen typed objects.

The key names are a contract (docs/contract.md §5, "Configuration"): keys may be
added, never renamed. Loading happens at start-up only and every error names
the key path (``carriers[0].port: expected int, got str``), so a bad file
stops the engine before it touches Redis or a carrier.

Environment overrides, applied after the file:

| variable | overrides |
|---|---|
| ``SENDGATE_CONFIG`` | the file to read when ``-c`` is not given |
| ``REDIS_URL`` | ``redis.url`` |
| ``SENDGATE_PREFIX`` | ``redis.prefix`` |
| ``SENDGATE_ADMIN_LISTEN`` | ``admin.listen`` |
| ``SENDGATE_LOG_LEVEL`` / ``SENDGATE_LOG_FORMAT`` | ``logging.level`` / ``logging.format`` |
| ``SENDGATE_HASH_SECRET`` | ``privacy.hash_secret`` |
| ``SENDGATE_CONSUMER`` | ``engine.consumer`` |
| ``SENDGATE_WEBHOOK_SECRET`` | ``webhooks.secret`` |
| ``SENDGATE_HISTORY_URL`` | ``history.url`` |
| ``SENDGATE_REDIS_PASSWORD`` | ``redis.password`` |
| ``SENDGATE_HISTORY_TEXT_KEY`` | ``history.text_key`` |
| ``SENDGATE_REDIS_CLUSTER`` | ``redis.cluster`` (``1``/``true``/``yes`` or ``0``/``false``/``no``) |
| ``SENDGATE_CARRIER_<NAME>_PASSWORD`` | ``carriers[…].password`` of carrier ``<name>`` (upper case, ``-`` and ``.`` as ``_``) |

Secrets (``redis.password``, ``privacy.hash_secret``, ``webhooks.secret``,
``history.text_key``, ``carriers[…].password``) may also come from a file: the
``…_file`` key next to them names it (``password_file``, ``hash_secret_file``,
``secret_file``, ``text_key_file``);
the file is read once here, a trailing newline dropped. Setting a secret both
inline and as a file is an error. Whatever holds a secret prints it as
``'***'`` (``repr``), so neither a log line, a traceback, ``/status`` nor a CLI
command shows one.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "AdminSettings",
    "CarrierSettings",
    "ClientSettings",
    "ConfigError",
    "EncodingSettings",
    "EngineSettings",
    "HistorySettings",
    "InboundSettings",
    "LoggingSettings",
    "PrivacySettings",
    "RedisSettings",
    "RetentionDays",
    "Settings",
    "WebhookSettings",
    "carrier_password_env",
    "has_hash_tag",
    "load_settings",
    "redact_url",
    "settings_from_mapping",
]


#: The most shards ``[redis] shards`` may name (each engine runs a reader per shard).
MAX_SHARDS = 256


class ConfigError(ValueError):
    """A configuration problem, naming the key path."""


#: Fields that hold a secret: shown as '***' by every settings object's repr.
SECRET_FIELDS = frozenset({"password", "hash_secret", "secret", "text_key"})
_URL_PASSWORD_RE = re.compile(r"(?P<head>^[a-z][a-z0-9+.-]*://[^/@:]*:)[^/@]*@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo (``redis://user:PASS@host``) as ``***``."""
    return _URL_PASSWORD_RE.sub(r"\g<head>***@", url)


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    def __repr__(self) -> str:  # secrets never appear in logs, tracebacks or /status
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in SECRET_FIELDS and value:
                value = "***"
            elif name == "url" and isinstance(value, str):
                value = redact_url(value)
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


class RedisSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str = ""  # empty and no REDIS_URL: embedded Redis; rediss:// = TLS
    prefix: str = "sendgate"
    username: str = ""  # Redis 6+ ACL user ("" = the URL's, or the default user)
    password: str = ""  # or password_file / SENDGATE_REDIS_PASSWORD; "" = the URL's
    password_file: str = ""
    tls_ca_file: str = ""  # rediss://: CA bundle to verify the server ("" = the system's)
    tls_cert_file: str = ""  # rediss://: client certificate (when the server asks for one)
    tls_key_file: str = ""
    # Shards (docs/contract.md §2.1): N > 1 puts every shard-local key under <prefix>:{k}:
    # (k = 0..N-1) and a job on shard crc32(id) mod N (engine/keys.py shard_of); 1 = today's names.
    shards: int = 1
    # Redis Cluster (docs/operating-cluster.md): url names any node; redis-py's cluster
    # client follows MOVED/ASK. With one shard the prefix must hold a hash tag ("{sendgate}").
    cluster: bool = False


class EngineSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    batch_size: int = 500
    group: str = "sendgate"
    resend_unknown: bool = False
    consumer: str = ""  # default: <hostname>-<pid>
    block_ms: int = 200  # XREADGROUP BLOCK
    # Steady rate (issue #17): after a read that drained the lanes with few jobs, wait
    # up to this long before the next read (a high job ends the wait at once), and let
    # a record call with few outcomes wait half this long for more: each call carries more
    # jobs. Bounds the extra wait of a normal/bulk job's send and of any outcome. 0 = off.
    gather_ms: int = 10
    visibility_timeout_s: float = 60.0  # idle time before another consumer reclaims an entry
    claim_interval_s: float = 10.0
    max_pending_parts: int = 0  # back-pressure: jobs read and not yet recorded; 0 = 4 x batch_size
    drain_timeout_s: float = 10.0  # SIGTERM: how long in-flight windows may take
    retry_attempts: int = 3  # transient submit errors, per part, before fallback/failure
    retry_backoff_s: float = 0.5
    streams_maxlen: int = 1_000_000  # approximate cap of the dead-letter stream, and of events without history
    idempotency_hours: float = 168.0  # a job id is sent at most once within this window (the mark's TTL)
    events_keep_hours: float = 72.0  # events stay until archived, and never longer than this
    events_min_keep_s: float = 300.0  # and at least this long (readers without a group)
    record_grace_s: int = 300  # a job record (receipts to aggregate or forward) lives this long after its final event
    receipt_hold_s: float = 5.0  # a receipt that beats its submit_sm_resp waits this long
    # Lanes (docs/contract.md §2.5): normal and bulk share what high leaves by these weights.
    lane_weights: dict[str, int] = msgspec.field(default_factory=lambda: {"normal": 4, "bulk": 1})
    # Jobs read ahead per carrier, lane and client: about this many seconds of the carrier's tps
    # (plus two windows in flight); a carrier without tps: max_pending_parts.
    lookahead_s: float = 1.0
    lane_high_water: int = 0  # /readyz says 503 when a lane's backlog is above this; 0 = never


class AdminSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    listen: str = "127.0.0.1:9108"  # "" disables the admin HTTP server
    sample_interval_s: float = 2.0  # lane backlog, oldest job, loop lag, Redis RTT (engine/ops_sampler.py); 0 = off


class LoggingSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    file: str = ""  # also write here; rotated daily, kept privacy.retention_days.activity_log days
    rotate: Literal["daily", "external"] = "daily"  # "external": logrotate moves it (reopened when moved)


class RetentionDays(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    message: int = 120
    payload: int = 60
    activity_log: int = 30
    audit: int = 730


class PrivacySettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    hash_secret: str = "change-me"
    hash_secret_file: str = ""
    dlr_wait_h: float = 72.0
    retention_days: RetentionDays = msgspec.field(default_factory=RetentionDays)
    # Operator privacy hooks, "pkg.module:Class", run in order after the defaults (privacy_hooks/hooks.py)
    hooks: list[str] = msgspec.field(default_factory=list)


class WebhookSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    secret: str = ""  # HMAC-SHA256 key of the X-Sendgate-Signature header; "" = derived from privacy.hash_secret
    secret_file: str = ""
    allow_private: bool = False  # callbacks may reach loopback/private/link-local addresses
    concurrency: int = 32
    max_attempts: int = 5
    timeout_s: float = 5.0


class HistorySettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The history store and its archiver (engine/history)."""

    enabled: bool = True  # archive inside `sendgate run`; `sendgate archive` runs it alone
    url: str = ""  # postgresql://… | sqlite:///path; "" = SQLite in the data directory
    keep_text: bool = False  # archive message text, AES-256-GCM with text_key (engine/history/text_cipher.py)
    text_key: str = ""  # 32 bytes as 64 hex digits or base64; several: the first seals, all open
    text_key_file: str = ""  # or SENDGATE_HISTORY_TEXT_KEY
    group: str = "archiver"  # consumer group on the events stream
    consumer: str = ""  # default: archiver-<hostname> (stable, so a restart finds its pending entries)
    batch_size: int = 5000
    block_ms: int = 1000
    settle_ms: int = 1000  # after a batch that was not full, wait this long before the next read
    defer_s: float = 30.0  # while jobs wait in the lanes, archive at most this long later (0 = never wait)
    hold_s: float = 10.0  # a job's non-final events wait at most this long (stream time) for its final one
    archiver: Literal["auto", "inline", "process"] = "auto"  # auto: a child process for PostgreSQL
    nice: int = 10  # the child process's CPU priority, relative to the engine (0-19)
    claim_idle_s: float = 60.0  # entries another archiver left pending this long are taken over


class EncodingSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    concat: Literal["udh8", "udh16", "sar", "payload"] = "udh8"
    packed: bool = False
    gsm_data_coding: int = 0
    shift_tables: tuple[str, ...] = ()
    smart_replace: bool = False
    max_parts: int = 10


class CarrierSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    password_file: str = ""  # or SENDGATE_CARRIER_<NAME>_PASSWORD
    tls: bool = False  # SMPP over TLS (certificate and host name verified)
    ca_file: str = ""  # CA bundle for tls ("" = the system's)
    server_name: str = ""  # name to verify the certificate against ("" = host)
    system_type: str = ""
    bind: Literal["transceiver", "transmitter+receiver"] = "transceiver"
    binds: int = 1
    # Binds open at once at this carrier across every engine sharing the Redis
    # (leases, engine/leases.py); 0 = no cap. ``binds`` stays what one engine may hold.
    max_binds: int = 0
    lease_ttl_s: float = 10.0  # a dead engine's bind leases go free after this
    window: int = 10
    tps: float = 0  # PDUs per second across all binds and processes; 0 = no limit
    # Throttle replies bring rate and window down, never below these (0 = tps/10, or 1/s)
    throttle_floor_per_s: float = 0
    window_floor: int = 1
    routes: tuple[str, ...] = ()
    fallback: str = ""
    dlr_id_format: Literal["as-is", "hex-to-dec", "dec-to-hex"] = "as-is"
    registered_delivery: Literal["all", "last"] = "all"
    dlr_wait_h: float = 0  # 0 = privacy.dlr_wait_h
    source_addr: str = ""  # default sender when a job has no `from`
    source_addr_ton: int = -1  # -1 = chosen from the sender (alphanumeric 5/0, international 1/1)
    source_addr_npi: int = -1
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    service_type: str = ""
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    bind_timeout_s: float = 10.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    auth_retry_s: float = 300.0
    drain_timeout_s: float = 5.0
    # No bind up for this long: its waiting jobs go to `fallback`, or fail with
    # carrier_unavailable; 0 = they wait (parked in Redis) until a bind is up.
    outage_fail_after_s: float = 0
    encoding: EncodingSettings = msgspec.field(default_factory=EncodingSettings)


#: Opt-out keywords when neither ``[inbound]`` nor the client names its own: the
#: usual English ones plus Danish (AFMELD), Norwegian (AVSLUTT, STOPP) and
#: Swedish (AVSLUTA). Matched after trimming and case-folding (engine/inbound.py).
DEFAULT_OPT_OUT_KEYWORDS: tuple[str, ...] = (
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "AFMELD", "AVSLUTT", "STOPP", "AVSLUTA",
)
DEFAULT_OPT_IN_KEYWORDS: tuple[str, ...] = ("START", "UNSTOP")


class InboundSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Mobile-originated messages (docs/contract.md §2.7): reassembly and the default keywords."""

    reassembly_wait_s: float = 60.0  # an incomplete multipart set is published `partial` after this
    opt_out_keywords: tuple[str, ...] = DEFAULT_OPT_OUT_KEYWORDS  # for clients that set none
    opt_in_keywords: tuple[str, ...] = DEFAULT_OPT_IN_KEYWORDS


class ClientSettings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    numbers: tuple[str, ...] = ()  # short codes / numbers whose inbound messages are this client's
    quiet_hours: str = ""  # "21:00-08:00": marketing held in the recipient's local time
    opt_out_keywords: tuple[str, ...] | None = None  # None: [inbound] opt_out_keywords
    opt_in_keywords: tuple[str, ...] | None = None  # None: [inbound] opt_in_keywords
    opt_out_reply: str = ""  # sent back to whoever opted out; "" = no reply
    footer: str = ""  # appended to marketing text that does not end with it
    inbound_webhook: str = ""  # URL receiving this client's inbound messages (signed like receipt callbacks)
    weight: int = 1  # share of a lane against the other clients (deficit round robin)


class Settings(_Base, frozen=True, forbid_unknown_fields=True, kw_only=True):
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    privacy: PrivacySettings = msgspec.field(default_factory=PrivacySettings)
    webhooks: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    history: HistorySettings = msgspec.field(default_factory=HistorySettings)
    inbound: InboundSettings = msgspec.field(default_factory=InboundSettings)
    carriers: tuple[CarrierSettings, ...] = ()
    clients: tuple[ClientSettings, ...] = ()

    def carrier(self, name: str) -> CarrierSettings:
        for c in self.carriers:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def consumer_name(self) -> str:
        return self.engine.consumer or f"{socket.gethostname()}-{os.getpid()}"


_PATH_RE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ROUTE_RE = re.compile(r"^\d{0,15}$")
_QUIET_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")


def _validation_message(err: msgspec.ValidationError) -> str:
    """msgspec says ``Expected `int`, got `str` - at `$.carriers[0].port```; we say
    ``carriers[0].port: expected int, got str``."""
    text = str(err)
    m = _PATH_RE.search(text)
    if not m:
        return text
    path = m.group("path") or "(top level)"
    problem = text[: m.start()].replace("`", "")
    problem = problem[:1].lower() + problem[1:]
    return f"{path}: {problem}"


def _check(settings: Settings) -> None:
    """Rules that a type cannot express; each error names the key path."""
    e = settings.engine
    if not 1 <= e.batch_size <= 10_000:
        raise ConfigError("engine.batch_size: must be between 1 and 10000")
    if not 0 <= e.gather_ms <= 200:
        raise ConfigError("engine.gather_ms: must be between 0 and 200 (0 = off)")
    if e.visibility_timeout_s <= 0:
        raise ConfigError("engine.visibility_timeout_s: must be > 0")
    if not e.retry_backoff_s > 0:
        raise ConfigError("engine.retry_backoff_s: must be > 0")
    if e.streams_maxlen < 1:
        # streams are capped with MAXLEN ~ n: 0 would empty a stream, not lift the cap
        raise ConfigError("engine.streams_maxlen: must be >= 1")
    if not e.idempotency_hours > 0:
        raise ConfigError("engine.idempotency_hours: must be > 0")
    if not e.events_keep_hours > 0:
        raise ConfigError("engine.events_keep_hours: must be > 0")
    if not 0 <= e.events_min_keep_s <= e.events_keep_hours * 3600:
        raise ConfigError("engine.events_min_keep_s: must be between 0 and events_keep_hours")
    if e.record_grace_s < 1:
        raise ConfigError("engine.record_grace_s: must be >= 1")
    for lane, weight in e.lane_weights.items():
        if lane not in ("normal", "bulk"):
            raise ConfigError(f"engine.lane_weights.{lane}: only normal and bulk have weights (high always goes first)")
        if not 1 <= weight <= 1000:
            raise ConfigError(f"engine.lane_weights.{lane}: must be 1..1000")
    if not 0 < e.lookahead_s <= 60:
        raise ConfigError("engine.lookahead_s: must be > 0 and <= 60")
    if e.lane_high_water < 0:
        raise ConfigError("engine.lane_high_water: must be >= 0 (0 = off)")
    if not settings.redis.prefix or any(c.isspace() for c in settings.redis.prefix):
        raise ConfigError("redis.prefix: must be non-empty without spaces")
    if isinstance(settings.redis.shards, bool) or not 1 <= settings.redis.shards <= MAX_SHARDS:
        raise ConfigError(f"redis.shards: must be 1..{MAX_SHARDS} (1 = one shard, today's key names)")
    if settings.redis.shards > 1 and ("{" in settings.redis.prefix or "}" in settings.redis.prefix):
        raise ConfigError(
            "redis.prefix: no { or } with redis.shards > 1 (each shard's keys carry their own hash tag {k})"
        )
    _check_cluster(settings.redis)
    if settings.admin.listen and not re.fullmatch(r".+:\d{1,5}", settings.admin.listen):
        raise ConfigError("admin.listen: expected HOST:PORT")
    if settings.admin.sample_interval_s != 0 and not 0.5 <= settings.admin.sample_interval_s <= 300:
        raise ConfigError("admin.sample_interval_s: 0 (off) or between 0.5 and 300")
    _check_redis(settings.redis)
    names: set[str] = set()
    for i, c in enumerate(settings.carriers):
        where = f"carriers[{i}]"
        if not _NAME_RE.match(c.name):
            raise ConfigError(f"{where}.name: 1-64 characters of A-Z a-z 0-9 _ . -")
        if c.name in names:
            raise ConfigError(f"{where}.name: duplicate carrier name {c.name!r}")
        names.add(c.name)
        if not 0 < c.port < 65536:
            raise ConfigError(f"{where}.port: must be 1..65535")
        if not 1 <= c.binds <= 64:
            raise ConfigError(f"{where}.binds: must be 1..64")
        if not 0 <= c.max_binds <= 256:
            raise ConfigError(f"{where}.max_binds: must be 0..256 (0 = no cap)")
        if not 1.0 <= c.lease_ttl_s <= 300.0:
            raise ConfigError(f"{where}.lease_ttl_s: must be 1..300 seconds")
        if not 1 <= c.window <= 10_000:
            raise ConfigError(f"{where}.window: must be 1..10000")
        if c.tps < 0:
            raise ConfigError(f"{where}.tps: must be >= 0 (0 = no limit)")
        if c.throttle_floor_per_s < 0 or (c.tps and c.throttle_floor_per_s > c.tps):
            raise ConfigError(f"{where}.throttle_floor_per_s: must be >= 0 and at most tps (0 = tps/10, or 1/s)")
        if not 1 <= c.window_floor <= c.window:
            raise ConfigError(f"{where}.window_floor: must be 1..window ({c.window})")
        if len(c.system_id) > 15:
            raise ConfigError(f"{where}.system_id: at most 15 characters (SMPP 3.4 §4.1.1)")
        if len(c.password) > 8:
            raise ConfigError(f"{where}.password: at most 8 characters (SMPP 3.4 §4.1.1)")
        for j, r in enumerate(c.routes):
            if not _ROUTE_RE.match(r.lstrip("+")):
                raise ConfigError(f"{where}.routes[{j}]: a destination prefix of digits, or \"\"")
        if c.outage_fail_after_s < 0:
            raise ConfigError(f"{where}.outage_fail_after_s: must be >= 0 (0 = wait for a bind)")
        if not 1 <= c.encoding.max_parts <= 255:
            raise ConfigError(f"{where}.encoding.max_parts: must be 1..255")
        if c.ca_file or c.server_name:
            if not c.tls:
                raise ConfigError(f"{where}.{'ca_file' if c.ca_file else 'server_name'}: needs tls = true")
            _check_readable(c.ca_file, f"{where}.ca_file")
    for i, c in enumerate(settings.carriers):
        if c.fallback and c.fallback not in names:
            raise ConfigError(f"carriers[{i}].fallback: no carrier named {c.fallback!r}")
        if c.fallback == c.name:
            raise ConfigError(f"carriers[{i}].fallback: a carrier cannot fall back to itself")
    w = settings.webhooks
    if not 1 <= w.concurrency <= 1024:
        raise ConfigError("webhooks.concurrency: must be 1..1024")
    if not 1 <= w.max_attempts <= 100:
        raise ConfigError("webhooks.max_attempts: must be 1..100")
    _check_history(settings.history)
    ids: set[str] = set()
    numbers: dict[str, str] = {}
    for i, cl in enumerate(settings.clients):
        if cl.id in ids:
            raise ConfigError(f"clients[{i}].id: duplicate client id {cl.id!r}")
        if not _NAME_RE.match(cl.id) or cl.id == "other":
            # it names a park stream and is a metric label; "other" is every unconfigured client
            raise ConfigError(f"clients[{i}].id: 1-64 characters of A-Z a-z 0-9 _ . - (and not 'other')")
        if not 1 <= cl.weight <= 1000:
            raise ConfigError(f"clients[{i}].weight: must be 1..1000")
        ids.add(cl.id)
        if cl.quiet_hours and not _QUIET_RE.fullmatch(cl.quiet_hours):
            raise ConfigError(f"clients[{i}].quiet_hours: expected \"HH:MM-HH:MM\" (e.g. \"21:00-08:00\") or \"\"")
        if cl.quiet_hours and cl.quiet_hours[:5] == cl.quiet_hours[6:]:
            raise ConfigError(f"clients[{i}].quiet_hours: start and end are the same time")
        for j, n in enumerate(cl.numbers):
            if not n.lstrip("+").isdigit():
                raise ConfigError(f"clients[{i}].numbers[{j}]: a number or short code of digits")
            owner = numbers.setdefault(n.lstrip("+"), cl.id)
            if owner != cl.id:
                raise ConfigError(f"clients[{i}].numbers[{j}]: already a number of client {owner!r}")
        for name in ("opt_out_keywords", "opt_in_keywords"):
            words = getattr(cl, name)
            if words is not None and any(not w.strip() for w in words):
                raise ConfigError(f"clients[{i}].{name}: keywords must not be empty")
    if settings.inbound.reassembly_wait_s <= 0:
        raise ConfigError("inbound.reassembly_wait_s: must be > 0")
    if settings.privacy.hooks:
        from privacy_hooks.hooks import load_hooks

        try:
            load_hooks(settings.privacy.hooks)  # each is built again by whoever runs the chain
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _check_readable(path: str, where: str) -> None:
    if path and not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: cannot read {path}")


def _check_redis(r: RedisSettings) -> None:
    tls_keys = [k for k in ("tls_ca_file", "tls_cert_file", "tls_key_file") if getattr(r, k)]
    if tls_keys and r.url and not r.url.lower().startswith("rediss://"):
        raise ConfigError(f"redis.{tls_keys[0]}: TLS needs a rediss:// URL")
    if bool(r.tls_cert_file) != bool(r.tls_key_file):
        raise ConfigError("redis.tls_cert_file: tls_cert_file and tls_key_file go together")
    for key in tls_keys:
        _check_readable(getattr(r, key), f"redis.{key}")


def _check_history(h: HistorySettings) -> None:
    from engine.history.url import parse_history_url

    try:
        parse_history_url(h.url)
    except ValueError as err:
        raise ConfigError(f"history.url: {err}") from None
    if h.keep_text or h.text_key:
        from engine.history.text_cipher import TextKeyError, cipher_available, parse_keys

        if not h.text_key:
            raise ConfigError(
                "history.text_key_file: keep_text needs a key (32 random bytes, base64 or hex: "
                "head -c 32 /dev/urandom | base64 > text.key), or SENDGATE_HISTORY_TEXT_KEY"
            )
        try:
            parse_keys(h.text_key)
        except TextKeyError as err:  # the message names the key's position, never its value
            raise ConfigError(f"history.text_key_file: {err}") from None
        if h.keep_text and not cipher_available():
            raise ConfigError(
                "history.keep_text: needs the 'cryptography' package (pip install 'sendgate[history-text]')"
            )
    if not h.group or any(c.isspace() for c in h.group):
        raise ConfigError("history.group: must be non-empty without spaces")
    if not 1 <= h.batch_size <= 50_000:
        raise ConfigError("history.batch_size: must be between 1 and 50000")
    if h.block_ms < 1:
        raise ConfigError("history.block_ms: must be >= 1")
    if not 0 <= h.settle_ms <= 60_000:
        raise ConfigError("history.settle_ms: must be between 0 and 60000")
    if not 0 <= h.defer_s <= 3600:
        raise ConfigError("history.defer_s: must be between 0 and 3600")
    if not 0 <= h.hold_s <= 300:
        raise ConfigError("history.hold_s: must be between 0 and 300")
    if not 0 <= h.nice <= 19:
        raise ConfigError("history.nice: must be between 0 and 19")
    if h.claim_idle_s <= 0:
        raise ConfigError("history.claim_idle_s: must be > 0")


def has_hash_tag(prefix: str) -> bool:
    """Whether every key under ``prefix`` hashes on a tag inside it: a ``{`` and a later
    ``}`` with at least one character between (Redis Cluster's hash-tag rule)."""
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 1) > start + 1


def _check_cluster(r: RedisSettings) -> None:
    if not r.cluster:
        return
    if not r.url:
        raise ConfigError("redis.cluster: needs redis.url (or REDIS_URL) naming a node of the cluster")
    scheme, _, rest = r.url.partition("://")
    if scheme.lower() not in ("redis", "rediss"):
        raise ConfigError("redis.url: with redis.cluster = true a redis:// or rediss:// URL of a cluster node")
    path = rest.split("?", 1)[0].partition("/")[2]
    if path not in ("", "0"):
        raise ConfigError(f"redis.url: a Redis Cluster has database 0 only, not /{path}")
    if r.shards == 1 and not has_hash_tag(r.prefix):
        raise ConfigError(
            f"redis.prefix: {r.prefix!r} has no hash tag; with redis.cluster = true (one shard) every key "
            "of a script call must share a slot: use a tagged prefix such as \"{sendgate}\""
        )


_ENV_OVERRIDES: tuple[tuple[str, tuple[str, str]], ...] = (
    ("REDIS_URL", ("redis", "url")),
    ("SENDGATE_PREFIX", ("redis", "prefix")),
    ("SENDGATE_ADMIN_LISTEN", ("admin", "listen")),
    ("SENDGATE_LOG_LEVEL", ("logging", "level")),
    ("SENDGATE_LOG_FORMAT", ("logging", "format")),
    ("SENDGATE_HASH_SECRET", ("privacy", "hash_secret")),
    ("SENDGATE_CONSUMER", ("engine", "consumer")),
    ("SENDGATE_WEBHOOK_SECRET", ("webhooks", "secret")),
    ("SENDGATE_HISTORY_URL", ("history", "url")),
    ("SENDGATE_REDIS_PASSWORD", ("redis", "password")),
    ("SENDGATE_HISTORY_TEXT_KEY", ("history", "text_key")),
    ("SENDGATE_REDIS_CLUSTER", ("redis", "cluster")),
)

_BOOLEAN_ENV = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


# (table, secret key, file key) of the secrets that may come from a file.
_SECRET_FILES: tuple[tuple[str, str, str], ...] = (
    ("redis", "password", "password_file"),
    ("privacy", "hash_secret", "hash_secret_file"),
    ("webhooks", "secret", "secret_file"),
    ("history", "text_key", "text_key_file"),
)


def carrier_password_env(name: str) -> str:
    """The variable holding carrier ``name``'s bind password: ``SENDGATE_CARRIER_<NAME>_PASSWORD``."""
    return "SENDGATE_CARRIER_" + re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_PASSWORD"


def _read_secret(table: dict[str, Any], key: str, file_key: str, where: str, from_env: bool) -> None:
    """Move the secret named by ``table[file_key]`` into ``table[key]``; errors name the key path."""
    path = table.get(file_key)
    if not path or not isinstance(path, str):
        return  # absent, or a type error msgspec reports with its path
    if from_env:
        table[file_key] = ""  # the environment wins over the file
        return
    if table.get(key):
        raise ConfigError(f"{where}.{file_key}: {where}.{key} is set too; keep one of them")
    try:
        value = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{where}.{file_key}: cannot read {path}: {err.strerror or type(err).__name__}") from None
    value = value.rstrip("\r\n")
    if not value:
        raise ConfigError(f"{where}.{file_key}: {path} is empty")
    table[key] = value


def _resolve_secrets(merged: dict[str, Any], env: Mapping[str, str], env_set: set[tuple[str, str]]) -> None:
    for section, key, file_key in _SECRET_FILES:
        table = merged.get(section)
        if isinstance(table, dict):
            _read_secret(table, key, file_key, section, (section, key) in env_set)
    carriers = merged.get("carriers")
    if isinstance(carriers, list):
        merged["carriers"] = carriers = [dict(c) if isinstance(c, dict) else c for c in carriers]
        for i, c in enumerate(carriers):
            if not isinstance(c, dict):
                continue
            name = c.get("name")
            value = env.get(carrier_password_env(name)) if isinstance(name, str) else None
            if value is not None:
                c["password"] = value
            _read_secret(c, "password", "password_file", f"carriers[{i}]", value is not None)


def _retention_alias(merged: dict[str, Any]) -> None:
    """``[privacy.retention_days] logs`` is another name of ``activity_log``."""
    privacy = merged.get("privacy")
    if not isinstance(privacy, dict) or not isinstance(privacy.get("retention_days"), dict):
        return
    privacy["retention_days"] = days = dict(privacy["retention_days"])
    if "logs" in days:
        if "activity_log" in days and days["activity_log"] != days["logs"]:
            raise ConfigError("privacy.retention_days.logs: another name of activity_log, which is set differently")
        days["activity_log"] = days.pop("logs")


def settings_from_mapping(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from parsed TOML data plus environment overrides, reading secret files."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    env = os.environ if env is None else env
    env_set: set[tuple[str, str]] = set()
    for var, (section, key) in _ENV_OVERRIDES:
        value = env.get(var)
        if value is not None:
            sect = merged.setdefault(section, {})
            if not isinstance(sect, dict):
                raise ConfigError(f"{section}: expected a table")
            if (section, key) == ("redis", "cluster"):
                if value.strip().lower() not in _BOOLEAN_ENV:
                    raise ConfigError(f"{var}: expected 1/true/yes or 0/false/no, got {value!r}")
                sect[key] = _BOOLEAN_ENV[value.strip().lower()]
            else:
                sect[key] = value.lower() if section == "logging" else value
            env_set.add((section, key))
    _retention_alias(merged)
    _resolve_secrets(merged, env, env_set)
    try:
        settings = msgspec.convert(merged, Settings)
    except msgspec.ValidationError as err:
        raise ConfigError(_validation_message(err)) from None
    _check(settings)
    return settings


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load the TOML file at ``path`` (or ``SENDGATE_CONFIG``; none: defaults)."""
    env = os.environ if env is None else env
    path = path or env.get("SENDGATE_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such config file") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{p}: not valid TOML: {err}") from None
    return settings_from_mapping(data, env)
