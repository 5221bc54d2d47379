-- Erasure ledger (`sendgate erase --now`, docs/contract.md "Known gaps" 10, closed):
-- the job ids whose rows an immediate erasure deleted, written in the erasure's
-- own transaction under the archivers' write lock. Every archiver batch deletes,
-- inside its own transaction and under the same lock, the rows of ledgered jobs
-- it wrote: a batch read from the events stream before the erasure and committed
-- after it cannot bring the subject's rows back. Job ids only (no number, no
-- hash); a row is kept one day (LEDGER_KEEP_MS, engine/history/store.py), far
-- longer than a batch is in an archiver's hands.
CREATE TABLE erasure_ledger (
    job_id    text   PRIMARY KEY,
    erased_ms bigint NOT NULL
);
CREATE INDEX erasure_ledger_erased ON erasure_ledger (erased_ms);
