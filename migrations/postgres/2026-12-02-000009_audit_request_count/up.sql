-- A row can stand for many requests: past a per-address budget, refused
-- requests without a valid credential are counted into one summary row per
-- address and minute. NULL means one request.
ALTER TABLE audit_events ADD COLUMN request_count BIGINT;
