-- Idempotency keys without the index on their age: a keyed create then writes its row and
-- its primary-key entry only. Expired keys are swept in batches from time to time instead
-- of on every insert, and an expired key met again is replaced where it is found.
DROP INDEX idempotency_keys_age;
