-- 0001_init: the whole data model of DESIGN.md.
--
-- PostgreSQL is the source of truth. `runs` is at once the ledger (one row per
-- planned slot, UNIQUE (schedule_id, scheduled_for)) and the outbox (a run is
-- queued and unpublished until a publisher's confirm sets published_at).
-- Identifiers are bigint identities: compact, ordered, cheap to index.

-- jobs: what to run ---------------------------------------------------------
CREATE TABLE jobs (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                      text        NOT NULL UNIQUE,
    description               text        NOT NULL DEFAULT '',
    handler                   text        NOT NULL,
    payload                   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Secret fields of the payload (e.g. an http job's Authorization header),
    -- encrypted with ENCRYPTION_KEY; never returned in full by the API.
    secret_payload            text,
    queue                     text        NOT NULL DEFAULT 'default',
    priority                  smallint    NOT NULL DEFAULT 0,
    timeout_seconds           double precision NOT NULL DEFAULT 300,
    max_attempts              integer     NOT NULL DEFAULT 3,
    retry_backoff_seconds     double precision NOT NULL DEFAULT 10,
    retry_backoff_max_seconds double precision NOT NULL DEFAULT 3600,
    concurrency_policy        text        NOT NULL DEFAULT 'allow',
    enabled                   boolean     NOT NULL DEFAULT true,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobs_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$'),
    CONSTRAINT jobs_queue_format CHECK (queue ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT jobs_priority_range CHECK (priority BETWEEN 0 AND 9),
    CONSTRAINT jobs_timeout_positive CHECK (timeout_seconds > 0),
    CONSTRAINT jobs_max_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT jobs_backoff_nonnegative CHECK (retry_backoff_seconds >= 0
                                               AND retry_backoff_max_seconds >= retry_backoff_seconds),
    CONSTRAINT jobs_concurrency_policy CHECK (concurrency_policy IN ('allow', 'forbid', 'replace'))
);

-- schedules: when -----------------------------------------------------------
CREATE TABLE schedules (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id                 bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind                   text        NOT NULL,
    interval_seconds       double precision,
    cron                   text,
    run_at                 timestamptz,
    timezone               text        NOT NULL DEFAULT 'UTC',
    jitter_seconds         double precision NOT NULL DEFAULT 0,
    start_at               timestamptz,
    end_at                 timestamptz,
    misfire_policy         text        NOT NULL DEFAULT 'run_once',
    -- How late a slot may be and still count as on time (skip) or be caught up
    -- (run_all). NULL means the policy's default (see core.schedule).
    misfire_grace_seconds  double precision,
    is_active              boolean     NOT NULL DEFAULT true,
    -- NULL until the scheduler (or the API) computes the first slot.
    next_run_at            timestamptz,
    last_run_at            timestamptz,
    run_count              bigint      NOT NULL DEFAULT 0,
    failure_count          integer     NOT NULL DEFAULT 0,
    last_error             text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_kind CHECK (kind IN ('interval', 'cron', 'once')),
    CONSTRAINT schedules_kind_fields CHECK (
        (kind = 'interval' AND interval_seconds > 0 AND cron IS NULL AND run_at IS NULL)
        OR (kind = 'cron' AND cron IS NOT NULL AND interval_seconds IS NULL AND run_at IS NULL)
        OR (kind = 'once' AND run_at IS NOT NULL AND interval_seconds IS NULL AND cron IS NULL)),
    CONSTRAINT schedules_jitter_nonnegative CHECK (jitter_seconds >= 0),
    CONSTRAINT schedules_bounds CHECK (end_at IS NULL OR start_at IS NULL OR end_at > start_at),
    CONSTRAINT schedules_misfire_policy CHECK (misfire_policy IN ('run_once', 'skip', 'run_all')),
    CONSTRAINT schedules_grace_nonnegative CHECK (misfire_grace_seconds IS NULL OR misfire_grace_seconds >= 0)
);

-- A tick reads only what is due: O(due), not O(all schedules).
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE is_active;
CREATE INDEX schedules_job ON schedules (job_id);

-- runs: the ledger and the outbox ------------------------------------------
CREATE TABLE runs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id             bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    schedule_id        bigint      REFERENCES schedules (id) ON DELETE SET NULL,
    -- The planned slot (nominal, before jitter); for manual runs the request time.
    scheduled_for      timestamptz NOT NULL,
    trigger            text        NOT NULL,
    triggered_by       text,
    status             text        NOT NULL DEFAULT 'queued',
    attempt            integer     NOT NULL DEFAULT 1,
    max_attempts       integer     NOT NULL DEFAULT 1,
    -- Not to be published (nor executed) before this instant: jitter and retry backoff.
    available_at       timestamptz NOT NULL DEFAULT now(),
    -- Set only after the broker confirmed the message.
    published_at       timestamptz,
    -- While a publisher holds the run (between its commit and the confirm), the
    -- relay of other instances leaves it alone; a crashed publisher's lease expires.
    publish_lease_until timestamptz,
    cancel_requested   boolean     NOT NULL DEFAULT false,
    started_at         timestamptz,
    finished_at        timestamptz,
    heartbeat_at       timestamptz,
    worker_id          text,
    result             jsonb,
    error              text,
    output             text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT runs_slot_unique UNIQUE (schedule_id, scheduled_for),
    CONSTRAINT runs_trigger CHECK (trigger IN ('schedule', 'manual', 'retry')),
    CONSTRAINT runs_status CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                                             'timed_out', 'cancelled', 'skipped', 'dead')),
    CONSTRAINT runs_attempt_positive CHECK (attempt >= 1)
);

-- The outbox: queued runs not yet confirmed by the broker, by availability.
CREATE INDEX runs_outbox ON runs (available_at) WHERE status = 'queued' AND published_at IS NULL;
-- The reaper: running runs by heartbeat age.
CREATE INDEX runs_running ON runs (heartbeat_at) WHERE status = 'running';
-- History: by job, newest first; by time for retention and stats.
CREATE INDEX runs_job_history ON runs (job_id, id DESC);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_status ON runs (status);

-- workers: registration and heartbeats -------------------------------------
CREATE TABLE workers (
    id              text        PRIMARY KEY,
    host            text        NOT NULL,
    pid             integer     NOT NULL,
    queues          text[]      NOT NULL DEFAULT '{}',
    handlers        text[]      NOT NULL DEFAULT '{}',
    concurrency     integer     NOT NULL DEFAULT 1,
    status          text        NOT NULL DEFAULT 'online',
    started_at      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL DEFAULT now(),
    runs_started    bigint      NOT NULL DEFAULT 0,
    runs_succeeded  bigint      NOT NULL DEFAULT 0,
    runs_failed     bigint      NOT NULL DEFAULT 0,
    CONSTRAINT workers_status CHECK (status IN ('online', 'draining', 'offline'))
);

-- scheduler_instances: one row per scheduler process -----------------------
CREATE TABLE scheduler_instances (
    id              text        PRIMARY KEY,
    host            text        NOT NULL,
    pid             integer     NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    last_tick_at    timestamptz,
    next_tick_at    timestamptz,
    ticks           bigint      NOT NULL DEFAULT 0,
    dispatched      bigint      NOT NULL DEFAULT 0,
    failures        bigint      NOT NULL DEFAULT 0,
    status          text        NOT NULL DEFAULT 'running',
    CONSTRAINT scheduler_instances_status CHECK (status IN ('running', 'stopped'))
);

-- system_settings: coordination keys between the API and the schedulers ----
-- scheduler_last_run, scheduler_next_run (ISO timestamps),
-- scheduler_trigger_requested ('true' / 'false').
CREATE TABLE system_settings (
    key         text        PRIMARY KEY,
    value       text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO system_settings (key, value) VALUES ('scheduler_trigger_requested', 'false');

-- api_keys: only a hash is stored; the prefix finds the row ----------------
CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL,
    prefix        text        NOT NULL UNIQUE,
    key_hash      text        NOT NULL,
    role          text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CONSTRAINT api_keys_role CHECK (role IN ('admin', 'viewer'))
);

-- audit_log: every write through the API or the CLI ------------------------
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL,
    action       text        NOT NULL,
    target_type  text        NOT NULL,
    target_id    text,
    details      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
