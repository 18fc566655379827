DROP TABLE oidc_pending;
DROP TABLE oidc_identities;
