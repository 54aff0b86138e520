-- 0011_notifications: alert notifications, delivered durably, at least once.
--
-- notification_channels: where to send (a signed JSON webhook, a Slack-compatible
-- incoming webhook, email over SMTP). What is secret (a webhook's URL and signing
-- secret, a Slack URL) is kept in secret_config, a Fernet token of ENCRYPTION_KEY like
-- jobs.secret_payload; `config` holds only what may be shown to viewers.
CREATE TABLE notification_channels (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text        NOT NULL UNIQUE,
    kind           text        NOT NULL,
    config         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    secret_config  text,
    enabled        boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_channels_kind CHECK (kind IN ('webhook', 'slack', 'email')),
    CONSTRAINT notification_channels_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$')
);

-- notification_rules: when to send, to one channel. Scope: a job, a queue, a schedule,
-- or everything (all NULL). `within_seconds` is the rule's time: no success for that
-- long (schedule_silent), a slot that late (missed_slot), a scheduler silent that long
-- (scheduler_stale), a queue without an online worker that long (queue_unattended).
-- `threshold` is outbox_backlog's number of runs. At most `max_per_hour` notifications
-- of one rule are sent per hour; the rest are recorded as suppressed.
CREATE TABLE notification_rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text        NOT NULL UNIQUE,
    kind            text        NOT NULL,
    channel_id      bigint      NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    job_id          bigint      REFERENCES jobs (id) ON DELETE CASCADE,
    schedule_id     bigint      REFERENCES schedules (id) ON DELETE CASCADE,
    queue           text,
    statuses        text[]      NOT NULL DEFAULT '{failed,timed_out,dead}',
    within_seconds  double precision,
    threshold       integer,
    max_per_hour    integer     NOT NULL DEFAULT 30,
    enabled         boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_rules_kind CHECK (kind IN ('run_failed', 'schedule_silent', 'missed_slot',
                                                       'scheduler_stale', 'queue_unattended',
                                                       'outbox_backlog')),
    CONSTRAINT notification_rules_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'),
    CONSTRAINT notification_rules_statuses CHECK (statuses <@ '{failed,timed_out,dead}'::text[]
                                                  AND cardinality(statuses) > 0),
    CONSTRAINT notification_rules_within_positive CHECK (within_seconds IS NULL OR within_seconds > 0),
    CONSTRAINT notification_rules_threshold_positive CHECK (threshold IS NULL OR threshold > 0),
    CONSTRAINT notification_rules_rate_positive CHECK (max_per_hour > 0)
);

CREATE INDEX notification_rules_run_failed ON notification_rules (kind) WHERE enabled;

-- notifications: the outbox of alerts. A row is written in the transaction of its event
-- where there is one (a run's final status, below), else by the scheduler's rule
-- evaluation; a delivery loop of the schedulers takes rows with FOR UPDATE SKIP LOCKED
-- and a lease, sends them, and records the outcome (or the next attempt's time).
-- dedup_key (rule + event) makes an event notify once whoever writes it twice.
CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id          bigint      REFERENCES notification_rules (id) ON DELETE SET NULL,
    channel_id       bigint      NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    dedup_key        text        NOT NULL UNIQUE,
    event            text        NOT NULL,
    state            text        NOT NULL DEFAULT 'firing',
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CONSTRAINT notifications_state CHECK (state IN ('firing', 'resolved', 'test')),
    CONSTRAINT notifications_status CHECK (status IN ('pending', 'delivered', 'failed', 'suppressed'))
);

-- The delivery loop reads only what waits: O(pending), not O(history).
CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE status = 'pending';
-- The rate limit counts a rule's recent deliveries; retention walks by age.
CREATE INDEX notifications_rule_recent ON notifications (rule_id, created_at);
CREATE INDEX notifications_created ON notifications (created_at);

-- notification_alerts: conditions that are firing now (a silent schedule, a stale
-- scheduler...), one row per rule and subject, so that a condition notifies once when it
-- starts and once when it ends, however many evaluations see it meanwhile.
CREATE TABLE notification_alerts (
    rule_id   bigint      NOT NULL REFERENCES notification_rules (id) ON DELETE CASCADE,
    subject   text        NOT NULL,
    since     timestamptz NOT NULL DEFAULT now(),
    details   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (rule_id, subject)
);

-- A run's final failure notifies in the transaction that records it, whoever writes it
-- (a worker's result, the reaper's rescue, an expiry): nothing is lost between the two.
-- Only the rows that fail pay for it (the WHEN clause); with no rule it is one index probe.
CREATE FUNCTION notify_run_failed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications (rule_id, channel_id, dedup_key, event, details)
    SELECT r.id, r.channel_id,
           'run_failed:' || r.id || ':' || NEW.id || ':' || NEW.attempt,
           'run_failed',
           jsonb_build_object('run_id', NEW.id, 'job_id', NEW.job_id, 'job', j.name,
                              'queue', j.queue, 'schedule_id', NEW.schedule_id,
                              'status', NEW.status, 'attempt', NEW.attempt,
                              'max_attempts', NEW.max_attempts, 'trigger', NEW.trigger,
                              'scheduled_for', NEW.scheduled_for, 'finished_at', NEW.finished_at,
                              'worker_id', NEW.worker_id, 'error', left(NEW.error, 2000))
    FROM notification_rules r
    JOIN jobs j ON j.id = NEW.job_id
    JOIN notification_channels c ON c.id = r.channel_id
    WHERE r.kind = 'run_failed'
      AND r.enabled
      AND c.enabled
      AND NEW.status = ANY (r.statuses)
      AND (r.job_id IS NULL OR r.job_id = NEW.job_id)
      AND (r.queue IS NULL OR r.queue = j.queue)
      AND (r.schedule_id IS NULL OR r.schedule_id = NEW.schedule_id)
    ON CONFLICT (dedup_key) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_notify_failed
AFTER UPDATE OF status ON runs
FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('failed', 'timed_out', 'dead'))
EXECUTE FUNCTION notify_run_failed();
