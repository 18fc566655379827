-- audit_events_id_idx (id) repeated the primary key (id, occurred_at), whose
-- leading column is id: every read by id, and every keyset page ordered by
-- id, uses the primary key as well (EXPLAIN at a million rows: index scans
-- backward on each partition's pkey, 0.2-0.4 ms a page). The copy cost every
-- audit row one more b-tree insert in PostgreSQL's backend: with it dropped,
-- that backend's CPU per gated request went 7.6-8.3 -> 7.2-7.4 µs in
-- alternating runs on one machine. The per-app index stays here (unlike on
-- SQLite): without it, an admin's filter for an app with few rows reads
-- every row (76 ms at a million, and large installations hold far more).
DROP INDEX IF EXISTS audit_events_id_idx;
