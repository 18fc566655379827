-- The audit trail grows without bound and is only appended to: partition it
-- by month so retention drops whole partitions instead of deleting rows.
-- keygate creates the partitions for this month and the next at start-up and
-- every day; a default partition catches anything outside them.
ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER INDEX audit_events_seller_idx RENAME TO audit_events_unpartitioned_seller_idx;
ALTER INDEX audit_events_time_idx RENAME TO audit_events_unpartitioned_time_idx;
ALTER INDEX audit_events_throttle_idx RENAME TO audit_events_unpartitioned_throttle_idx;
ALTER INDEX audit_events_ip_idx RENAME TO audit_events_unpartitioned_ip_idx;

CREATE TABLE audit_events (
    LIKE audit_events_unpartitioned INCLUDING DEFAULTS,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

INSERT INTO audit_events SELECT * FROM audit_events_unpartitioned;
ALTER SEQUENCE audit_events_id_seq OWNED BY audit_events.id;
DROP TABLE audit_events_unpartitioned;

CREATE INDEX audit_events_seller_idx ON audit_events (seller_id, id);
CREATE INDEX audit_events_id_idx ON audit_events (id);
CREATE INDEX audit_events_time_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_throttle_idx ON audit_events (event, subject, occurred_at);
CREATE INDEX audit_events_ip_idx ON audit_events (event, ip, occurred_at);
