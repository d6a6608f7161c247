DROP INDEX relays_results_unsent;
ALTER TABLE relays DROP COLUMN result_error;
ALTER TABLE relays DROP COLUMN result_attempts;
ALTER TABLE relays DROP COLUMN result_sent_at;
