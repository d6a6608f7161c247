-- Which leadership of the hub processes sharing this database may write. A hub that takes
-- the owner lock moves the epoch on; every group commit reads it under a share lock first
-- and commits only if it is still its own, so a deposed leader that wakes up late cannot
-- commit anything (the new leader's move waits for any commit already under way).
CREATE TABLE leadership (
    id    integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    since text NOT NULL
);
INSERT INTO leadership (id, epoch, since) VALUES (1, 0, '');
