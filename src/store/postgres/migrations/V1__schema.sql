-- Schema version 1 of the PostgreSQL engine. docs/DESIGN.md, "PostgreSQL schema", explains
-- every table and choice; the comments here say what each constraint enforces.
--
-- Conventions:
-- * Ids (tenant, record, key) are `text COLLATE "C"`: byte order, which is the order sled
--   lists records in (its keys are the id bytes), so both engines page alike.
-- * An instant is `text COLLATE "C"` in one fixed form, RFC 3339 UTC with nine fraction
--   digits (2019-08-24T14:15:22.500000000Z), checked by a CHECK. It keeps the domain's
--   nanoseconds exactly (timestamptz keeps microseconds: a record moved between engines would
--   change), and byte order is time order for that fixed width, so ranges use the indexes.
-- * Numbers the API carries as JSON numbers (`number`, order amounts) are `double
--   precision`: the domain's f64, stored exactly.
-- * Only portable SQL (see docs/SCALING.md): no triggers, advisory locks, LISTEN/NOTIFY,
--   extensions, sequences or domains.

-- Operator-wide values every node must agree on: the page-token secret and the operator
-- key's hash. A node creates a missing one with INSERT ... ON CONFLICT DO NOTHING and then
-- reads what won.
CREATE TABLE settings (
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE tenants (
    id                  text COLLATE "C" PRIMARY KEY,
    created_at          text COLLATE "C" NOT NULL
        CHECK (created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    -- Limits; NULL = unlimited (domain::tenant::Limits).
    requests_per_second double precision CHECK (requests_per_second > 0),
    max_registrations   bigint CHECK (max_registrations >= 0),
    max_storage_bytes   bigint CHECK (max_storage_bytes >= 0)
);

-- The tenant's counters, one row per tenant: every write that moves one updates this row in
-- its transaction (UPDATE ... RETURNING, or SELECT ... FOR NO KEY UPDATE first), so two nodes
-- writing for one tenant take turns on it. A separate row from `tenants` so that these
-- writes never block a reader or an admin change of the limits.
CREATE TABLE tenant_counters (
    tenant_id           text COLLATE "C" PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Registrations stored (tenant_limit: max_registrations).
    registration_count  bigint NOT NULL DEFAULT 0 CHECK (registration_count >= 0),
    -- The last registration / order number handed out, or taken by a client or an import
    -- (the sequence moves past a given number, as on sled): never handed out twice.
    registration_number bigint NOT NULL DEFAULT 0 CHECK (registration_number >= 0),
    order_number        bigint NOT NULL DEFAULT 0 CHECK (order_number >= 0),
    -- Bytes the tenant's records take (tenant_limit: max_storage_bytes).
    stored_bytes        bigint NOT NULL DEFAULT 0 CHECK (stored_bytes >= 0),
    -- Messages in the tenant's outbox (the sweeper's cap).
    outbox_messages     bigint NOT NULL DEFAULT 0 CHECK (outbox_messages >= 0)
);

-- The tenants and keys change rarely and every request reads them, so each node caches them.
-- Every change of a tenant or a key (create, limits, revoke) adds one to this single row in
-- its transaction; a node reads the row at least once a second and reloads its cache when the
-- number moved. That is how a key revoked on one node is refused by all within 1 s, with no
-- notification channel and no reliance on the nodes' clocks agreeing.
CREATE TABLE directory_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL CHECK (version >= 0)
);
INSERT INTO directory_version (id, version) VALUES (1, 0);

-- An API key: everything but the secret, of which only the SHA-256 is kept. Revoking
-- deletes the row (as on sled), and moves directory_version.
CREATE TABLE api_keys (
    id          text COLLATE "C" PRIMARY KEY,
    tenant_id   text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    name        text,
    created_at  text COLLATE "C" NOT NULL
        CHECK (created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    secret_hash bytea NOT NULL CHECK (octet_length(secret_hash) = 32)
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

-- ---- catalog records ------------------------------------------------------------------------
-- One table per kind (domain::catalog::CatalogKind), all with the same base columns:
-- * `fields`: the kind's whole fields struct as JSON (a catalog record is always read whole);
-- * the record's `sys` block in columns (`sys_version` is the optimistic-concurrency check);
-- * per kind, copies of the fields that a foreign key or a rule reads without the record
--   (written by the engine from `fields` in the same statement; `check` compares them).

CREATE TABLE contacts (
    tenant_id                 text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                        text COLLATE "C" NOT NULL,
    sys_version               bigint NOT NULL CHECK (sys_version >= 1),
    sys_created_at            text COLLATE "C" NOT NULL
        CHECK (sys_created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_created_by_id         text NOT NULL,
    sys_last_modified_at      text COLLATE "C" NOT NULL
        CHECK (sys_last_modified_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_last_modified_by_id   text NOT NULL,
    sys_last_security_context jsonb NOT NULL,
    fields                    jsonb NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE courses (
    tenant_id                 text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                        text COLLATE "C" NOT NULL,
    sys_version               bigint NOT NULL CHECK (sys_version >= 1),
    sys_created_at            text COLLATE "C" NOT NULL
        CHECK (sys_created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_created_by_id         text NOT NULL,
    sys_last_modified_at      text COLLATE "C" NOT NULL
        CHECK (sys_last_modified_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_last_modified_by_id   text NOT NULL,
    sys_last_security_context jsonb NOT NULL,
    fields                    jsonb NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE email_templates (
    tenant_id                 text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                        text COLLATE "C" NOT NULL,
    sys_version               bigint NOT NULL CHECK (sys_version >= 1),
    sys_created_at            text COLLATE "C" NOT NULL
        CHECK (sys_created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_created_by_id         text NOT NULL,
    sys_last_modified_at      text COLLATE "C" NOT NULL
        CHECK (sys_last_modified_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_last_modified_by_id   text NOT NULL,
    sys_last_security_context jsonb NOT NULL,
    fields                    jsonb NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE course_offerings (
    tenant_id                 text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                        text COLLATE "C" NOT NULL,
    sys_version               bigint NOT NULL CHECK (sys_version >= 1),
    sys_created_at            text COLLATE "C" NOT NULL
        CHECK (sys_created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_created_by_id         text NOT NULL,
    sys_last_modified_at      text COLLATE "C" NOT NULL
        CHECK (sys_last_modified_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_last_modified_by_id   text NOT NULL,
    sys_last_security_context jsonb NOT NULL,
    fields                    jsonb NOT NULL,
    -- missing_reference / has_dependants: an offering's course exists and cannot be deleted
    -- under it. A PUT may move an offering to another course (as on sled), so registrations
    -- reference the offering alone and the engine checks "offering of that course".
    course_id                 text COLLATE "C" NOT NULL,
    capacity                  bigint CHECK (capacity >= 0),
    -- The active registrations holding a seat (offering_full). Moved by the registration
    -- writes in their transaction; the row lock serialises two nodes' creates, and the CHECK
    -- makes overbooking impossible even for a write that forgot the rule (capacity_below_seats
    -- keeps a lowered capacity at or above it).
    active_seats              bigint NOT NULL DEFAULT 0 CHECK (active_seats >= 0),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, course_id) REFERENCES courses (tenant_id, id),
    CHECK (capacity IS NULL OR active_seats <= capacity)
);
CREATE INDEX course_offerings_by_course ON course_offerings (tenant_id, course_id);

CREATE TABLE registration_processes (
    tenant_id                 text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                        text COLLATE "C" NOT NULL,
    sys_version               bigint NOT NULL CHECK (sys_version >= 1),
    sys_created_at            text COLLATE "C" NOT NULL
        CHECK (sys_created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_created_by_id         text NOT NULL,
    sys_last_modified_at      text COLLATE "C" NOT NULL
        CHECK (sys_last_modified_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_last_modified_by_id   text NOT NULL,
    sys_last_security_context jsonb NOT NULL,
    fields                    jsonb NOT NULL,
    course_id                 text COLLATE "C" NOT NULL,
    course_offering_id        text COLLATE "C",
    email_template_id         text COLLATE "C",
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, course_id) REFERENCES courses (tenant_id, id),
    FOREIGN KEY (tenant_id, course_offering_id) REFERENCES course_offerings (tenant_id, id),
    FOREIGN KEY (tenant_id, email_template_id) REFERENCES email_templates (tenant_id, id)
);
CREATE INDEX registration_processes_by_course ON registration_processes (tenant_id, course_id);
CREATE INDEX registration_processes_by_offering
    ON registration_processes (tenant_id, course_offering_id);
CREATE INDEX registration_processes_by_template
    ON registration_processes (tenant_id, email_template_id);

CREATE TABLE orders (
    tenant_id                 text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                        text COLLATE "C" NOT NULL,
    sys_version               bigint NOT NULL CHECK (sys_version >= 1),
    sys_created_at            text COLLATE "C" NOT NULL
        CHECK (sys_created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_created_by_id         text NOT NULL,
    sys_last_modified_at      text COLLATE "C" NOT NULL
        CHECK (sys_last_modified_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_last_modified_by_id   text NOT NULL,
    sys_last_security_context jsonb NOT NULL,
    fields                    jsonb NOT NULL,
    -- From the tenant's order sequence (tenant_counters.order_number). Not UNIQUE: an
    -- imported order keeps the number its export has, and sled never refused a clash there;
    -- the sequence's row lock is what keeps handed-out numbers distinct.
    number                    double precision,
    contact_id                text COLLATE "C",
    -- order_exists / a live order blocks deleting its registration: live = not cancelled
    -- and not void (OrderFields::is_live).
    status                    text NOT NULL CHECK (status IN ('awaiting payment',
        'awaiting shipping', 'awaiting pickup', 'partially shipped', 'shipped', 'completed',
        'cancelled', 'disputed', 'open', 'returned', 'void')),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)
);
CREATE INDEX orders_by_number ON orders (tenant_id, number);
CREATE INDEX orders_by_contact ON orders (tenant_id, contact_id);

-- ---- registrations --------------------------------------------------------------------------
-- A column for every field that a lookup, a search criterion, a rule or a constraint reads;
-- the remaining fields (contact details other than the searched ones, offering details,
-- bulk-load stamps, notes, custom fields, ...) in `fields`, as the record's JSON would write
-- them. The engine splits a record into both and joins them back.
CREATE TABLE registrations (
    tenant_id             text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                    text COLLATE "C" NOT NULL,
    sys_version           bigint NOT NULL CHECK (sys_version >= 1),
    number                double precision,
    status                text NOT NULL CHECK (status IN ('draft', 'registered', 'attended',
        'no show', 'cancelled', 'in progress', 'completed')),
    -- Required by the domain (RegistrationFields::complete).
    student_id            text COLLATE "C" NOT NULL,
    course_id             text COLLATE "C" NOT NULL,
    course_offering_id    text COLLATE "C" NOT NULL,
    process_id            text COLLATE "C",
    order_id              text COLLATE "C",
    -- Lookups.
    application_id        text COLLATE "C",
    event_registration_id text COLLATE "C",
    -- Search criteria.
    order_number          double precision,
    order_status          text CHECK (order_status IN ('awaiting payment',
        'awaiting shipping', 'awaiting pickup', 'partially shipped', 'shipped', 'completed',
        'cancelled', 'disputed', 'open', 'returned', 'void')),
    order_balance_due     double precision,
    order_amount_paid     double precision,
    order_total           double precision,
    training_provider_id  text COLLATE "C",
    training_location_id  text COLLATE "C",
    arrival_date          text COLLATE "C"
        CHECK (arrival_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    departure_date        text COLLATE "C"
        CHECK (departure_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    date                  text COLLATE "C"
        CHECK (date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sys_created_at        text COLLATE "C"
        CHECK (sys_created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    -- Case-insensitive substring criteria (no index: see DESIGN.md).
    name                  text NOT NULL,
    email_address         text,
    job_title             text,
    city                  text,
    state                 text,
    -- record_locked.
    sys_locked            boolean,
    fields                jsonb NOT NULL,
    PRIMARY KEY (tenant_id, id),
    -- missing_reference / has_dependants, across nodes: a registration cannot name a record
    -- that does not exist, and a record cannot be deleted while a registration names it.
    FOREIGN KEY (tenant_id, student_id) REFERENCES contacts (tenant_id, id),
    FOREIGN KEY (tenant_id, course_id) REFERENCES courses (tenant_id, id),
    FOREIGN KEY (tenant_id, course_offering_id) REFERENCES course_offerings (tenant_id, id),
    FOREIGN KEY (tenant_id, process_id) REFERENCES registration_processes (tenant_id, id),
    FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id)
);

-- duplicate_registration: one student, one live (not cancelled) registration per offering
-- (CourseRegistration::holds_slot). The slot of sled's `registration_slots` tree.
CREATE UNIQUE INDEX registrations_one_slot_per_student
    ON registrations (tenant_id, course_offering_id, student_id)
    WHERE status <> 'cancelled';

-- The lookup indexes (store::sled::index::REGISTRATION_INDEXES), each ending in the id, which
-- is the listing and paging order.
CREATE INDEX registrations_by_student ON registrations (tenant_id, student_id, id);
CREATE INDEX registrations_by_course ON registrations (tenant_id, course_id, id);
CREATE INDEX registrations_by_course_offering
    ON registrations (tenant_id, course_offering_id, id);
CREATE INDEX registrations_by_student_course
    ON registrations (tenant_id, student_id, course_id, id);
CREATE INDEX registrations_by_application ON registrations (tenant_id, application_id, id);
CREATE INDEX registrations_by_event_registration
    ON registrations (tenant_id, event_registration_id, id);
CREATE INDEX registrations_by_order ON registrations (tenant_id, order_id, id);
CREATE INDEX registrations_by_status ON registrations (tenant_id, status, id);
CREATE INDEX registrations_by_course_status ON registrations (tenant_id, course_id, status, id);
-- For the foreign key from registrations to processes (deleting a process looks here).
CREATE INDEX registrations_by_process ON registrations (tenant_id, process_id);

-- ---- mail, stored responses -----------------------------------------------------------------

-- Mail kept instead of sent (no SMTP relay), newest first by id. `sent_at` is for a node
-- that delivers through a relay later: it claims unsent rows with FOR UPDATE SKIP LOCKED,
-- so each message is sent once whichever node runs.
CREATE TABLE outbox (
    tenant_id       text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              text COLLATE "C" NOT NULL,
    message_id      text NOT NULL,
    to_address      text NOT NULL,
    subject         text NOT NULL,
    html            text,
    body_text       text,
    -- No foreign key: a message outlives the registration it was about (as on sled).
    registration_id text COLLATE "C",
    created_at      text COLLATE "C" NOT NULL
        CHECK (created_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    sent_at         text COLLATE "C"
        CHECK (sent_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;

-- The first response to each Idempotency-Key, and the claim of a request still running
-- with it. The primary key makes one request win across nodes: it inserts the claim (status,
-- headers and body NULL) with INSERT ... ON CONFLICT DO NOTHING, runs, and fills in the
-- response; a request that finds a claim waits for it (or answers that the key is in use)
-- and one that finds a response replays it. A claim older than the request timeout belongs
-- to a node that died, and is taken over by a conditional UPDATE.
CREATE TABLE idempotency_responses (
    tenant_id   text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         text COLLATE "C" NOT NULL,
    -- SHA-256 of the method, path, query and body of the first request.
    fingerprint bytea NOT NULL CHECK (octet_length(fingerprint) = 32),
    status      integer CHECK (status BETWEEN 100 AND 599),
    -- [[name, value], ...]: the headers worth replaying.
    headers     jsonb,
    body        bytea,
    -- When the claim was made, then when the response was stored.
    stored_at   text COLLATE "C" NOT NULL
        CHECK (stored_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'),
    PRIMARY KEY (tenant_id, key),
    -- A claim has none of the response; a response has all of it.
    CHECK ((status IS NULL) = (headers IS NULL) AND (status IS NULL) = (body IS NULL))
);
-- The sweeper deletes what is older than the TTL, oldest first.
CREATE INDEX idempotency_responses_by_age ON idempotency_responses (stored_at);
