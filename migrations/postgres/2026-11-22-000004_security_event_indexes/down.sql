DROP INDEX audit_events_throttle_idx;
DROP INDEX audit_events_ip_idx;
CREATE INDEX audit_events_throttle_idx ON audit_events (event, subject, occurred_at);
CREATE INDEX audit_events_ip_idx ON audit_events (event, ip, occurred_at);
