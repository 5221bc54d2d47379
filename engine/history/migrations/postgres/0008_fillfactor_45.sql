-- fillfactor 45 instead of 50 (bench/RESULTS.md, "pgcost"): a receipt's UPDATE
-- stays on its row's page (HOT: no entry in any index) only while the page has
-- room for a new version of every row updated in the same batch, and a row grows
-- by its receipt (final_state, final_ms, the event in `events`: 232 -> 296 bytes
-- for the engine's usual row). At 50, 80-87 % of those updates were HOT; at 45,
-- 100 % for delivered receipts (80 % for a failure that also carries an error
-- code), the heap no larger (the updates that left their page at 50 bloated it
-- as much) and the backends' CPU per job of the COPY + UPDATE path 16 % lower.
-- A job written as one COPYed row costs the same at either. New partitions get
-- it from engine/history/postgres.py; existing ones from here (it applies to the
-- pages they fill from now on; nothing is rewritten, so the upgrade is instant).
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'messages'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 45)', part);
    END LOOP;
END $$;
