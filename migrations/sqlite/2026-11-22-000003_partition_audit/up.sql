-- PostgreSQL partitions the audit trail by month in this migration. SQLite
-- has no partitions; its trail keeps the time index of the first migration
-- and retention deletes by range.
SELECT 1;
