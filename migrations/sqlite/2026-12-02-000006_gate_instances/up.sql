-- Every running instance reports here which `token_revision` it has
-- applied (it has dropped every token row it remembered from before), and
-- when it last did. `keygate token revoke` waits until every instance that
-- reported within a few seconds has applied the revocation's revision.
CREATE TABLE gate_instances (
    id TEXT PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,
    revision_seen BIGINT NOT NULL
);
