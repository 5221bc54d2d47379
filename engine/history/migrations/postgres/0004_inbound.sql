-- Inbound (mobile-originated) messages: one row per inbound stream entry,
-- partitioned by the UTC day of the entry id (inbound_pYYYYMMDD, created and
-- dropped by the application like the messages partitions). The entry's
-- stream and id are the key: archiving the same entry again inserts nothing.
-- The sender is held as its keyed hash and masked form only; `to` is the
-- client's short code or number (in clear when a short code or one of the
-- configured [[clients]] numbers, else masked). Times in unix ms,
-- retention_until in unix s, as in the messages table.
CREATE TABLE inbound (
    stream          text    NOT NULL,              -- the inbound stream the entry was read from
    entry_id        text    NOT NULL,              -- its stream entry id
    day             date    NOT NULL,
    ts_ms           bigint  NOT NULL,              -- the message's `ts` (unix ms)
    from_hash       text    NOT NULL DEFAULT '',   -- keyed hash of the sender (privacy_hooks)
    from_mask       text    NOT NULL DEFAULT '',   -- +45******78; never the number in clear
    to_addr         text    NOT NULL DEFAULT '',
    client          text    NOT NULL DEFAULT '',
    carrier         text    NOT NULL DEFAULT '',
    parts           integer NOT NULL DEFAULT 1,
    total           integer NOT NULL DEFAULT 1,    -- parts there should have been (> parts: partial)
    partial         boolean NOT NULL DEFAULT false,
    text_enc        bytea,                         -- [history] keep_text (not written yet, as for jobs)
    retention_until bigint  NOT NULL DEFAULT 0,
    erased_ms       bigint  NOT NULL DEFAULT 0,
    archived_ms     bigint  NOT NULL,
    PRIMARY KEY (stream, entry_id, day)
) PARTITION BY RANGE (day);

CREATE INDEX inbound_from_hash ON inbound (from_hash, ts_ms) WHERE from_hash <> '';
CREATE INDEX inbound_client ON inbound (client, ts_ms);
