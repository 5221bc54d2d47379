-- Inbound (mobile-originated) messages: one row per inbound stream entry (see
-- the PostgreSQL migration). Retention deletes by `day` (indexed).
CREATE TABLE inbound (
    stream          TEXT    NOT NULL,
    entry_id        TEXT    NOT NULL,
    day             TEXT    NOT NULL,
    ts_ms           INTEGER NOT NULL,
    from_hash       TEXT    NOT NULL DEFAULT '',
    from_mask       TEXT    NOT NULL DEFAULT '',
    to_addr         TEXT    NOT NULL DEFAULT '',
    client          TEXT    NOT NULL DEFAULT '',
    carrier         TEXT    NOT NULL DEFAULT '',
    parts           INTEGER NOT NULL DEFAULT 1,
    total           INTEGER NOT NULL DEFAULT 1,
    partial         INTEGER NOT NULL DEFAULT 0,
    text_enc        BLOB,
    retention_until INTEGER NOT NULL DEFAULT 0,
    erased_ms       INTEGER NOT NULL DEFAULT 0,
    archived_ms     INTEGER NOT NULL,
    PRIMARY KEY (stream, entry_id)
);

CREATE INDEX inbound_day ON inbound (day);
CREATE INDEX inbound_from_hash ON inbound (from_hash, ts_ms) WHERE from_hash <> '';
CREATE INDEX inbound_client ON inbound (client, ts_ms);
