CREATE INDEX audit_events_id_idx ON audit_events (id);
