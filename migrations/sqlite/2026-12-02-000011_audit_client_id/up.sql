-- The OAuth app behind a row: the client of an OAuth access token's call,
-- or the app an OAuth security event is about. API Logs name the app,
-- filter by it and export it; NULL for API tokens and the portal.
ALTER TABLE audit_events ADD COLUMN client_id TEXT;
CREATE INDEX audit_events_client_idx ON audit_events (client_id, id);
