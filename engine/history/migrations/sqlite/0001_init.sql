-- sendgate history store, SQLite (the embedded default): one row per job. One
-- table; retention deletes by day (the UTC day of the job's first event, ISO
-- text). Times are unix ms, retention_until unix seconds.
CREATE TABLE messages (
    job_id          TEXT    NOT NULL PRIMARY KEY,
    day             TEXT    NOT NULL,
    ref             TEXT    NOT NULL DEFAULT '',
    client          TEXT    NOT NULL DEFAULT '',
    kind            TEXT    NOT NULL DEFAULT '',
    carrier         TEXT    NOT NULL DEFAULT '',
    parts           INTEGER NOT NULL DEFAULT 0,
    encoding        TEXT    NOT NULL DEFAULT '',
    message_ids     TEXT    NOT NULL DEFAULT '',
    to_hash         TEXT    NOT NULL DEFAULT '',
    to_mask         TEXT    NOT NULL DEFAULT '',
    first_ms        INTEGER NOT NULL,
    submitted_ms    INTEGER,
    final_state     TEXT    NOT NULL DEFAULT '',
    final_ms        INTEGER,
    error           TEXT    NOT NULL DEFAULT '',
    events          TEXT    NOT NULL DEFAULT '{}',
    errors          TEXT    NOT NULL DEFAULT '{}',
    retention_until INTEGER NOT NULL DEFAULT 0,
    text_enc        BLOB,
    updated_ms      INTEGER NOT NULL
);

CREATE INDEX messages_day ON messages (day);
CREATE INDEX messages_ref ON messages (ref, first_ms) WHERE ref <> '';
CREATE INDEX messages_to_hash ON messages (to_hash, first_ms) WHERE to_hash <> '';
CREATE INDEX messages_client ON messages (client, first_ms);
