-- Only rows of an OAuth app carry a client_id; every other row (API tokens,
-- the portal) left a NULL entry in this index, one more b-tree insert per
-- audit row for nothing. A partial index serves `client_id = ?` alike.
DROP INDEX audit_events_client_idx;
CREATE INDEX audit_events_client_idx ON audit_events (client_id, id) WHERE client_id IS NOT NULL;
