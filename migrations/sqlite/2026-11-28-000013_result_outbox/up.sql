-- The federation result outbox (issue 17): the result of a task a peer relayed here is
-- owed to that peer until it is delivered. An inbound relay whose task has finished and
-- whose result_sent_at is empty is a result still to send; the sender retries it with
-- backoff, across restarts, until the peer answers.
ALTER TABLE relays ADD COLUMN result_sent_at TEXT;
ALTER TABLE relays ADD COLUMN result_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE relays ADD COLUMN result_error TEXT;
-- Results of tasks finished before the outbox existed were sent, or given up, back then.
UPDATE relays SET result_sent_at = created_at
WHERE direction = 'inbound'
  AND task_id IN (SELECT id FROM tasks WHERE status IN ('done', 'failed', 'cancelled'));
CREATE INDEX relays_results_unsent ON relays (direction) WHERE result_sent_at IS NULL;
