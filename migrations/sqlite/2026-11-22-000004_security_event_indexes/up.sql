-- Sign-in throttling looks only at security events; API rows, nearly all of
-- the table, need not pay for these two indexes on every insert.
DROP INDEX audit_events_throttle_idx;
DROP INDEX audit_events_ip_idx;
CREATE INDEX audit_events_throttle_idx ON audit_events (event, subject, occurred_at) WHERE kind = 'security';
CREATE INDEX audit_events_ip_idx ON audit_events (event, ip, occurred_at) WHERE kind = 'security';
