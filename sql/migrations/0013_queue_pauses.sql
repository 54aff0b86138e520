-- Pausing a queue, or every queue at once (the row '*', which no queue can be named).
--
-- The runs of a paused queue stay queued and unpublished: the relay and the publishers
-- (tick, "run now", retries) publish none of them, and a worker that gets a message sent
-- before the pause hands its run back to the outbox instead of starting it. Schedules keep
-- firing, so every slot still gets its run; resuming deletes the row and wakes the
-- schedulers, whose relay then publishes what waited. Runs already running go on.
CREATE TABLE queue_pauses (
    queue      text        PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text        NOT NULL
);
