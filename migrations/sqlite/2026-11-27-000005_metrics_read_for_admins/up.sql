-- metrics:read joined the permission list after tokens were issued with explicit lists.
-- A token that held every permission there was (an admin: Principal::is_admin) keeps
-- holding every permission, so it stays an admin and may still hand out the admin preset.
-- Any other token is left as it was: it never held everything.
UPDATE tokens
SET permissions = json_insert(permissions, '$[#]', 'metrics:read')
WHERE json_valid(permissions)
  AND NOT EXISTS (SELECT 1 FROM json_each(tokens.permissions) WHERE value = 'metrics:read')
  AND (SELECT count(DISTINCT value) FROM json_each(tokens.permissions) WHERE value IN (
        'tasks:read', 'tasks:create', 'tasks:update', 'tasks:execute', 'tasks:delete',
        'agents:read', 'agents:register', 'agents:delete',
        'messages:read', 'messages:write', 'memory:read', 'memory:write',
        'escalations:create', 'escalations:read', 'escalations:resolve',
        'pipelines:create', 'admin:templates', 'admin:audit', 'admin:kill_switch',
        'admin:users', 'admin:analytics')) = 21;
