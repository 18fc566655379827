CREATE INDEX audit_events_client_idx ON audit_events (client_id, id) WHERE client_id IS NOT NULL;
