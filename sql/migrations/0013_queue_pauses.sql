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

-- Whether the runs of job $1 are held by a pause (its queue's or every queue's): the one
-- definition the relay, the scheduler's wake-up, the workers' claim, the dispatch-lag
-- gauge and the outbox-backlog alert share. A plain SQL function: inlined by the planner.
CREATE FUNCTION job_paused(job_id bigint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT 1
                   FROM queue_pauses p
                   JOIN jobs j ON p.queue IN (j.queue, '*')
                   WHERE j.id = job_id)
$$;
