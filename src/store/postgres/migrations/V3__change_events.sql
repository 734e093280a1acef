-- Schema version 3: change events (docs/DESIGN.md, "The event store"). Every write of a
-- record inserts one row here in its own transaction, numbered per tenant from
-- tenant_counters.event_seq: the write holds that row FOR UPDATE already (every write of a
-- tenant takes it first), so the numbers follow commit order with no gaps, whichever node
-- writes. Portable SQL only, as in V1.

-- The tenant's last event sequence number.
ALTER TABLE tenant_counters ADD COLUMN event_seq bigint NOT NULL DEFAULT 0 CHECK (event_seq >= 0);

CREATE TABLE change_events (
    tenant_id         text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- 1, 2, 3, … per tenant in commit order: the feed's cursor.
    seq               bigint NOT NULL CHECK (seq >= 1),
    -- domain::transfer::RecordKind's tag: registration, contact, course, …
    kind              text COLLATE "C" NOT NULL,
    record_id         text COLLATE "C" NOT NULL,
    op                text NOT NULL CHECK (op IN ('created', 'updated', 'deleted')),
    -- The record's sys_version after the write (for a delete: the version deleted).
    sys_version       bigint NOT NULL CHECK (sys_version >= 1),
    at                text COLLATE "C" NOT NULL
        CHECK (at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    key_id            text NOT NULL,
    role              text NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    request_id        text,
    bulk_operation_id text,
    -- The RFC 6902 patch as JSON text: kept byte for byte (jsonb would reorder the record's
    -- fields in a create's or a delete's whole-record value).
    patch             text NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

-- One record's history, newest first.
CREATE INDEX change_events_by_record ON change_events (tenant_id, kind, record_id, seq);
