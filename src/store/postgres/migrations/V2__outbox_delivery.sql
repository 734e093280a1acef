-- Mail through an SMTP relay is journaled before it is sent (issue 17): previewEmail commits
-- the message as 'pending', claimed by its node until `claimed_until`, then sends it and marks
-- it 'sent' (sent_at) or 'failed' (failed_at, error). A message still pending once its claim
-- ran out (its node died between the commit and the send) is claimed by any node's deliverer:
-- SELECT ... FOR UPDATE SKIP LOCKED, then an UPDATE of the claim, in one transaction, so each
-- message is handed to one node at a time. Mail kept without a relay is 'kept'.
ALTER TABLE outbox ADD COLUMN state text NOT NULL DEFAULT 'kept'
    CHECK (state IN ('kept', 'pending', 'sent', 'failed'));
ALTER TABLE outbox ADD COLUMN claimed_until text COLLATE "C"
    CHECK (claimed_until ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$');
-- The deliverers' claims so far; after a few, a message the relay keeps refusing is 'failed'.
ALTER TABLE outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0);
ALTER TABLE outbox ADD COLUMN failed_at text COLLATE "C"
    CHECK (failed_at ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$');
ALTER TABLE outbox ADD COLUMN error text;
ALTER TABLE outbox ADD CONSTRAINT outbox_delivery CHECK (
    (state = 'pending') = (claimed_until IS NOT NULL)
    AND (state = 'sent') = (sent_at IS NOT NULL)
    AND (state = 'failed') = (failed_at IS NOT NULL)
    AND (state = 'failed') = (error IS NOT NULL)
);
-- Kept mail is never sent, so "sent_at IS NULL" named every kept message: the deliverers
-- look for pending ones whose claim ran out.
DROP INDEX outbox_unsent;
CREATE INDEX outbox_pending ON outbox (claimed_until) WHERE state = 'pending';
