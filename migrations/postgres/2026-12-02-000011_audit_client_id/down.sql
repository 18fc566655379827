DROP INDEX audit_events_client_idx;
ALTER TABLE audit_events DROP COLUMN client_id;
