-- Erasure by policy (sendgate erase without --now): the row is hidden at once
-- (erased_ms set, ref and to_mask blanked) and re-stamped (retention_until);
-- queries skip it, later events of the job never fill ref or to_mask back in.
-- to_hash and client stay, so a later `erase --now` still finds the row.
ALTER TABLE messages ADD COLUMN erased_ms INTEGER NOT NULL DEFAULT 0;
