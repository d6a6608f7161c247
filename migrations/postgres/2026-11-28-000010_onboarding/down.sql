DROP TABLE consumer_leases;
ALTER TABLE agents DROP COLUMN state;
DROP TABLE agent_credentials;
DROP TABLE agent_preregistrations;
DROP TABLE registration_tokens;
