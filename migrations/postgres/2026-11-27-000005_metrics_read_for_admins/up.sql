-- metrics:read joined the permission list after tokens were issued with explicit lists.
-- A token that held every permission there was (an admin: Principal::is_admin) keeps
-- holding every permission, so it stays an admin and may still hand out the admin preset.
-- Any other token is left as it was: it never held everything.
-- PostgreSQL 15 has no json_valid(): pg_temp.m3shd_try_jsonb() yields NULL for text that
-- is not JSON, and the update only touches JSON arrays (what SQLite's '$[#]' appends to).
-- The rewritten list is jsonb text (`["a", "b"]`: a space after each comma, where SQLite
-- writes `["a","b"]`); the hub parses it as JSON, so both read the same.
CREATE FUNCTION pg_temp.m3shd_try_jsonb(t text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN t::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

UPDATE tokens
SET permissions = (pg_temp.m3shd_try_jsonb(permissions) || '["metrics:read"]'::jsonb)::text
WHERE jsonb_typeof(pg_temp.m3shd_try_jsonb(permissions)) = 'array'
  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(pg_temp.m3shd_try_jsonb(tokens.permissions)) AS p (value)
                  WHERE p.value = 'metrics:read')
  AND (SELECT count(DISTINCT p.value) FROM jsonb_array_elements_text(pg_temp.m3shd_try_jsonb(tokens.permissions)) AS p (value)
       WHERE p.value IN (
        'tasks:read', 'tasks:create', 'tasks:update', 'tasks:execute', 'tasks:delete',
        'agents:read', 'agents:register', 'agents:delete',
        'messages:read', 'messages:write', 'memory:read', 'memory:write',
        'escalations:create', 'escalations:read', 'escalations:resolve',
        'pipelines:create', 'admin:templates', 'admin:audit', 'admin:kill_switch',
        'admin:users', 'admin:analytics')) = 21;

DROP FUNCTION pg_temp.m3shd_try_jsonb(text);
