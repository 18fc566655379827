-- A token may rotate itself (POST /api/v1/token/rotate, SPEC §2): on by
-- default; the old secret then keeps working for self_rotation_grace_minutes
-- (default an hour, at most a day).
ALTER TABLE api_tokens ADD COLUMN self_rotation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE api_tokens ADD COLUMN self_rotation_grace_minutes INTEGER NOT NULL DEFAULT 60;
