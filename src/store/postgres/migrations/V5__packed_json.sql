-- Schema version 5: a registration's fields and a change event's patch stored as bytes, the
-- node's JSON text compressed by the node (store/postgres/packed.rs; docs/DESIGN.md, "The
-- PostgreSQL engine"; docs/PERFORMANCE.md, issue 17's ninth round). A tenant's writes run one
-- after another in one backend, which spent about a third of its time parsing `fields` into
-- jsonb and compressing both values with pglz. No query reads inside either value: what SQL
-- compares has its own column.
--
-- The existing rows keep their JSON text as it is (a value that is not a zstd frame is JSON
-- text); the next write of a record stores it compressed. The columns are replaced rather
-- than changed in type (ALTER COLUMN … TYPE … USING): CockroachDB still calls that form
-- experimental. Portable SQL only, as in V1.

ALTER TABLE registrations ADD COLUMN fields_stored bytea;
UPDATE registrations SET fields_stored = convert_to(fields::text, 'UTF8');
ALTER TABLE registrations ALTER COLUMN fields_stored SET NOT NULL;
ALTER TABLE registrations DROP COLUMN fields;
ALTER TABLE registrations RENAME COLUMN fields_stored TO fields;

ALTER TABLE change_events ADD COLUMN patch_stored bytea;
UPDATE change_events SET patch_stored = convert_to(patch, 'UTF8');
ALTER TABLE change_events ALTER COLUMN patch_stored SET NOT NULL;
ALTER TABLE change_events DROP COLUMN patch;
ALTER TABLE change_events RENAME COLUMN patch_stored TO patch;
