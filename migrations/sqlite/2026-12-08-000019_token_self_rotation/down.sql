ALTER TABLE api_tokens DROP COLUMN self_rotation_grace_minutes;
ALTER TABLE api_tokens DROP COLUMN self_rotation;
