-- sendgate history store, PostgreSQL: one row per job, partitioned by the UTC
-- day of the job's first event. Times are unix milliseconds (as in the events
-- stream); retention_until is unix seconds (as the privacy hooks stamp it).
-- Partitions (messages_pYYYYMMDD) are created ahead and dropped past retention
-- by the application (engine/history/postgres.py), not here.
CREATE TABLE messages (
    job_id          text    NOT NULL,
    day             date    NOT NULL,
    ref             text    NOT NULL DEFAULT '',
    client          text    NOT NULL DEFAULT '',
    kind            text    NOT NULL DEFAULT '',
    carrier         text    NOT NULL DEFAULT '',
    parts           integer NOT NULL DEFAULT 0,
    encoding        text    NOT NULL DEFAULT '',
    message_ids     text    NOT NULL DEFAULT '',   -- comma-joined carrier message ids
    to_hash         text    NOT NULL DEFAULT '',   -- keyed hash of the number (privacy_hooks)
    to_mask         text    NOT NULL DEFAULT '',   -- +45******78; never the number in clear
    first_ms        bigint  NOT NULL,
    submitted_ms    bigint,
    final_state     text    NOT NULL DEFAULT '',
    final_ms        bigint,
    error           text    NOT NULL DEFAULT '',   -- the latest error code
    events          jsonb   NOT NULL DEFAULT '{}', -- event -> ts (ms), every state seen
    errors          jsonb   NOT NULL DEFAULT '{}', -- event -> error code
    retention_until bigint  NOT NULL DEFAULT 0,
    text_enc        bytea,                         -- [history] keep_text (not written yet)
    updated_ms      bigint  NOT NULL,
    PRIMARY KEY (job_id, day)
) PARTITION BY RANGE (day);

CREATE INDEX messages_ref ON messages (ref, first_ms) WHERE ref <> '';
CREATE INDEX messages_to_hash ON messages (to_hash, first_ms) WHERE to_hash <> '';
CREATE INDEX messages_client ON messages (client, first_ms);
