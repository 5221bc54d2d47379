-- Erasure ledger of inbound messages (`sendgate erase --now`): the stream entries
-- of the subject's inbound messages an immediate erasure found in the inbound
-- stream or deleted from the `inbound` table, written in the erasure's own
-- transaction under the inbound write lock. Every inbound archiver batch deletes,
-- inside its own transaction and under the same lock, the rows it wrote of
-- ledgered entries: a batch read before the erasure and committed after it
-- cannot bring the subject's messages back. Entry ids only (no number, no hash);
-- kept one day (LEDGER_KEEP_MS), as the job ledger of migration 0006.
CREATE TABLE erasure_ledger_inbound (
    stream    TEXT NOT NULL,
    entry_id  TEXT NOT NULL,
    erased_ms INTEGER NOT NULL,
    PRIMARY KEY (stream, entry_id)
);
CREATE INDEX erasure_ledger_inbound_erased ON erasure_ledger_inbound (erased_ms);
