DROP TABLE oauth_device_codes;
ALTER TABLE oauth_apps DROP COLUMN device_flow;
