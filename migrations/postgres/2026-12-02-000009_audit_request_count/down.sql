ALTER TABLE audit_events DROP COLUMN request_count;
