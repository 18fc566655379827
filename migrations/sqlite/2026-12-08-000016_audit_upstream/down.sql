ALTER TABLE audit_events DROP COLUMN upstream_latency_us;
ALTER TABLE audit_events DROP COLUMN upstream_status;
