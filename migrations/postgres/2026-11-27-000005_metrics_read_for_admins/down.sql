-- No token holds metrics:read before this migration.
-- (See up.sql: PostgreSQL 15 has no json_valid(); only JSON arrays are rewritten.)
CREATE FUNCTION pg_temp.m3shd_try_jsonb(t text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN t::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

UPDATE tokens
SET permissions = (SELECT COALESCE(jsonb_agg(p.elem ORDER BY p.n), '[]'::jsonb)::text
                   FROM jsonb_array_elements(pg_temp.m3shd_try_jsonb(tokens.permissions))
                        WITH ORDINALITY AS p (elem, n)
                   WHERE p.elem #>> '{}' <> 'metrics:read')
WHERE jsonb_typeof(pg_temp.m3shd_try_jsonb(permissions)) = 'array'
  AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(pg_temp.m3shd_try_jsonb(tokens.permissions)) AS p (value)
              WHERE p.value = 'metrics:read');

DROP FUNCTION pg_temp.m3shd_try_jsonb(text);
