-- Schema version 4: webhook endpoints and their delivery queue (issue 19; docs/DESIGN.md,
-- "Webhooks"). An endpoint's row is its record as JSON (`doc`: the endpoint, its secret, its
-- delivery state and lease), with the fields the deliverers' claim filters on copied into
-- columns. A node takes an endpoint with SELECT … FOR UPDATE SKIP LOCKED and a lease
-- (lease_owner, lease_until) that runs out, so a dead node's endpoints are taken over.
-- Portable SQL only, as in V1.

CREATE TABLE webhook_endpoints (
    tenant_id    text COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           text COLLATE "C" NOT NULL,
    doc          text NOT NULL,
    enabled      boolean NOT NULL,
    -- The last event sequence number delivered or passed over.
    cursor       bigint NOT NULL CHECK (cursor >= 0),
    -- Instants as the schema stores them (schema::instant_text): text order is time order.
    next_attempt text COLLATE "C",
    lease_owner  text,
    lease_until  text COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhook_attempts (
    tenant_id   text COLLATE "C" NOT NULL,
    endpoint_id text COLLATE "C" NOT NULL,
    -- 1, 2, … per endpoint; the newest 1000 are kept.
    number      bigint NOT NULL CHECK (number >= 1),
    doc         text NOT NULL,
    PRIMARY KEY (tenant_id, endpoint_id, number),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id)
        ON DELETE CASCADE
);
