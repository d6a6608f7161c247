DROP INDEX tasks_pinned;
DROP TABLE exchange_events;
DROP TABLE exchange_messages;
DROP TABLE exchange_requests;
DROP TABLE exchange_executors;
DROP TABLE exchanges;
