-- Measured on the archiver's steady state (bench/history.py, bench/RESULTS.md):
--
-- * fillfactor 50: a receipt's update finds room on its row's page and stays a
--   HOT update (no entry in any index): ~87 % of updates HOT instead of ~20 %
--   at 80, 30 % less WAL, indexes a third smaller, and the heap no larger
--   (at 80 the updates that leave the page bloat it as much). New partitions
--   get it from engine/history/postgres.py; existing ones from here (it
--   applies to the pages they fill from now on).
-- * to_hash: a hash index. The lookups are by equality only (erasure, export,
--   `sendgate history --to`), and a B-tree on a random 32-character key cost
--   more than the other two secondary indexes together per insert.
DROP INDEX IF EXISTS messages_to_hash;
CREATE INDEX messages_to_hash ON messages USING hash (to_hash) WHERE to_hash <> '';

DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'messages'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 50)', part);
    END LOOP;
END $$;
