-- The API remembers a verified key for a few seconds (API_KEY_CACHE_SECONDS) so most
-- requests need no key lookup. Every change that can end or alter a key's access is
-- announced on the channel sundial_api_keys, and each API forgets what it remembered at
-- once (services/api/auth.py, KeyCache). last_used_at alone is not announced.
CREATE FUNCTION announce_api_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sundial_api_keys', TG_OP);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE OF name, prefix, key_hash, role, expires_at, revoked_at OR DELETE
    ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION announce_api_key_change();

CREATE TRIGGER api_keys_truncated
    AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION announce_api_key_change();
