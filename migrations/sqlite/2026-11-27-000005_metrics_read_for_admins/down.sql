-- No token holds metrics:read before this migration.
UPDATE tokens
SET permissions = (SELECT json_group_array(value) FROM json_each(tokens.permissions)
                   WHERE value <> 'metrics:read')
WHERE json_valid(permissions)
  AND EXISTS (SELECT 1 FROM json_each(tokens.permissions) WHERE value = 'metrics:read');
