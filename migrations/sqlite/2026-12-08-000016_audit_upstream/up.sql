-- keygate as a reverse proxy (--upstream): the audit row of a forwarded
-- request records the upstream's answer. upstream_status is the status the
-- upstream answered, NULL when the request was not forwarded or the upstream
-- never answered (refused, reset, timed out: outcome upstream_error).
-- upstream_latency_us is the time from sending the request upstream until its
-- response head arrived (or the attempt failed), the upstream's share of
-- latency_us; NULL when the request was not forwarded. Both NULL for the demo
-- API, refusals and portal events.
ALTER TABLE audit_events ADD COLUMN upstream_status INTEGER;
ALTER TABLE audit_events ADD COLUMN upstream_latency_us BIGINT;
