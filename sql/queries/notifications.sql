-- Alert notifications: the delivery loop (claim, record) and the rule evaluation
-- (firing conditions, alerts opened and closed). Run failures are written by the
-- runs_notify_failed trigger of migration 0011, in the transaction of the failure.

-- name: claim_notifications
-- Up to $1 notifications due for an attempt and held by no one, leased for $2 seconds
-- with the attempt counted; each with its channel and rule.
WITH due AS (
    SELECT id
    FROM notifications
    WHERE status = 'pending'
      AND next_attempt_at <= now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
SET lease_until = now() + make_interval(secs => $2),
    attempts = n.attempts + 1
FROM due
JOIN notifications base ON base.id = due.id
JOIN notification_channels c ON c.id = base.channel_id
LEFT JOIN notification_rules r ON r.id = base.rule_id
WHERE n.id = due.id
RETURNING n.id, n.rule_id, n.channel_id, n.event, n.state, n.details, n.attempts, n.created_at,
          c.name AS channel_name, c.kind AS channel_kind, c.config AS channel_config,
          c.secret_config AS channel_secret, c.enabled AS channel_enabled,
          r.name AS rule_name, r.max_per_hour;

-- name: lock_rule_rates
-- The rate limits of the rules $1 (in ascending order), locked until the transaction
-- ends: each is decided by one scheduler at a time. Advisory locks, not the rules' rows,
-- so that editing or deleting a rule never waits for (or deadlocks with) a delivery.
SELECT pg_advisory_xact_lock(hashtextextended('sundial.notification_rate', rule_id))
FROM unnest($1::bigint[]) AS rule_id;

-- name: rule_deliveries_last_hour
-- How many notifications of each rule ($1) count against its hourly limit: delivered in
-- the last hour, or being sent now by another scheduler (leased, not among ours, $2).
SELECT rule_id, count(*) AS n
FROM (
    SELECT rule_id
    FROM notifications
    WHERE rule_id = ANY ($1::bigint[])
      AND created_at > now() - interval '2 hours'
      AND delivered_at > now() - interval '1 hour'
    UNION ALL
    SELECT rule_id
    FROM notifications
    WHERE rule_id = ANY ($1::bigint[])
      AND status = 'pending'
      AND state <> 'test'
      AND lease_until > now()
      AND id <> ALL ($2::bigint[])
) counted
GROUP BY rule_id;

-- name: record_deliveries
-- The outcome of attempts, many at once: 'delivered', 'failed', 'suppressed', or
-- 'pending' again with the next attempt $4 seconds from now. Only rows still pending.
UPDATE notifications n
SET status = d.status,
    delivered_at = CASE WHEN d.status = 'delivered' THEN now() ELSE n.delivered_at END,
    next_attempt_at = CASE WHEN d.status = 'pending'
                           THEN now() + make_interval(secs => d.retry_in_s)
                           ELSE n.next_attempt_at END,
    lease_until = NULL,
    last_error = d.error
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[]) AS d(id, status, error, retry_in_s)
WHERE n.id = d.id
  AND n.status = 'pending';

-- name: delete_old_notifications
-- Finished notifications older than $1 days, up to $2 at a time.
WITH old AS (
    SELECT id
    FROM notifications
    WHERE created_at < now() - $1::float8 * interval '1 day'
      AND status <> 'pending'
    ORDER BY created_at
    LIMIT $2
)
DELETE FROM notifications n
USING old
WHERE n.id = old.id;

-- name: take_evaluation_lock
-- One scheduler evaluates the rules at a time; the others skip the round.
SELECT pg_try_advisory_xact_lock(hashtextextended('sundial.notification_rules', 0));

-- name: firing_schedule_silent
-- Active schedules of enabled jobs in a rule's scope whose last success (or, failing
-- one, the schedule's or the rule's creation) is older than the rule's within_seconds.
SELECT r.id AS rule_id, 'schedule:' || s.id AS subject,
       jsonb_build_object('schedule_id', s.id, 'job_id', j.id, 'job', j.name, 'queue', j.queue,
                          'within_seconds', r.within_seconds,
                          'last_success_at', ok.finished_at) AS details
FROM notification_rules r
JOIN schedules s ON (r.schedule_id IS NULL OR s.id = r.schedule_id)
JOIN jobs j ON j.id = s.job_id
LEFT JOIN LATERAL (
    -- Through runs_job_finished, the job's successes newest first: a schedule that only
    -- fails (what this rule is for) costs one probe, not a walk through its failures.
    SELECT finished_at
    FROM runs
    WHERE job_id = s.job_id
      AND status = 'succeeded'
      AND finished_at IS NOT NULL
      AND schedule_id = s.id
    ORDER BY finished_at DESC
    LIMIT 1
) ok ON true
WHERE r.kind = 'schedule_silent'
  AND r.enabled
  AND s.is_active
  AND j.enabled
  AND (r.job_id IS NULL OR j.id = r.job_id)
  AND (r.queue IS NULL OR j.queue = r.queue)
  AND greatest(ok.finished_at, s.created_at, r.updated_at)
      < now() - make_interval(secs => r.within_seconds);

-- name: firing_missed_slot
-- Active schedules in a rule's scope whose next slot is more than within_seconds past:
-- no scheduler has fired it.
SELECT r.id AS rule_id, 'schedule:' || s.id AS subject,
       jsonb_build_object('schedule_id', s.id, 'job_id', j.id, 'job', j.name, 'queue', j.queue,
                          'within_seconds', r.within_seconds,
                          'next_run_at', s.next_run_at) AS details
FROM notification_rules r
JOIN schedules s ON (r.schedule_id IS NULL OR s.id = r.schedule_id)
JOIN jobs j ON j.id = s.job_id
WHERE r.kind = 'missed_slot'
  AND r.enabled
  AND s.is_active
  AND (r.job_id IS NULL OR j.id = r.job_id)
  AND (r.queue IS NULL OR j.queue = r.queue)
  AND s.next_run_at < now() - make_interval(secs => r.within_seconds);

-- name: firing_scheduler_stale
-- Scheduler instances that say they run but have not passed for within_seconds
-- (killed, frozen, cut off from the database).
SELECT r.id AS rule_id, 'scheduler:' || i.id AS subject,
       jsonb_build_object('instance', i.id, 'host', i.host, 'pid', i.pid,
                          'within_seconds', r.within_seconds,
                          'last_tick_at', i.last_tick_at) AS details
FROM notification_rules r
CROSS JOIN scheduler_instances i
WHERE r.kind = 'scheduler_stale'
  AND r.enabled
  AND i.status = 'running'
  AND coalesce(i.last_tick_at, i.started_at) < now() - make_interval(secs => r.within_seconds);

-- name: firing_queue_unattended
-- Queues of enabled jobs (in a rule's scope) that no worker has consumed for
-- within_seconds (none heard from that recently lists the queue).
SELECT r.id AS rule_id, 'queue:' || qs.queue AS subject,
       jsonb_build_object('queue', qs.queue, 'within_seconds', r.within_seconds,
                          'queued', (SELECT count(*)
                                     FROM runs x
                                     JOIN jobs xj ON xj.id = x.job_id
                                     WHERE x.status = 'queued' AND xj.queue = qs.queue)) AS details
FROM notification_rules r
JOIN (SELECT DISTINCT queue FROM jobs WHERE enabled) qs ON (r.queue IS NULL OR qs.queue = r.queue)
WHERE r.kind = 'queue_unattended'
  AND r.enabled
  AND NOT EXISTS (
      SELECT 1
      FROM workers w
      WHERE qs.queue = ANY (w.queues)
        AND w.last_heartbeat > now() - make_interval(secs => r.within_seconds));

-- name: firing_outbox_backlog
-- The outbox (runs available and not yet published, but for those a queue pause holds)
-- holding more than a rule's threshold; counted no further than the largest threshold
-- needs.
WITH backlog AS (
    SELECT count(*) AS n
    FROM (
        SELECT 1
        FROM runs
        WHERE status = 'queued'
          AND published_at IS NULL
          AND available_at <= now()
          AND NOT job_paused(job_id)
        LIMIT (SELECT coalesce(max(threshold) + 1, 0)
               FROM notification_rules
               WHERE kind = 'outbox_backlog' AND enabled)
    ) waiting
)
SELECT r.id AS rule_id, 'outbox' AS subject,
       jsonb_build_object('unpublished', backlog.n, 'threshold', r.threshold) AS details
FROM notification_rules r
CROSS JOIN backlog
WHERE r.kind = 'outbox_backlog'
  AND r.enabled
  AND backlog.n > r.threshold;

-- name: open_alerts_list
-- Every condition firing now, by rule and subject.
SELECT rule_id, subject FROM notification_alerts;

-- name: open_alerts
-- Conditions that started firing ($1 rules, $2 subjects, $3 details): an alert each, and
-- a notification to the rule's channel.
WITH opened AS (
    INSERT INTO notification_alerts (rule_id, subject, details)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::jsonb[])
    ON CONFLICT (rule_id, subject) DO NOTHING
    RETURNING rule_id, subject, since, details
)
INSERT INTO notifications (rule_id, channel_id, dedup_key, event, state, details)
SELECT r.id, r.channel_id,
       r.kind || ':' || r.id || ':' || o.subject || ':' || extract(epoch FROM o.since) || ':firing',
       r.kind, 'firing', o.details || jsonb_build_object('since', o.since)
FROM opened o
JOIN notification_rules r ON r.id = o.rule_id
JOIN notification_channels c ON c.id = r.channel_id
WHERE c.enabled
ON CONFLICT (dedup_key) DO NOTHING;

-- name: close_alerts
-- Conditions that stopped firing ($1 rules, $2 subjects): the alert goes, and the rule's
-- channel hears it is resolved (unless the rule was disabled meanwhile). A stale
-- scheduler that stopped firing because the reaper forgot it did not recover: its alert
-- goes without a word.
WITH closed AS (
    DELETE FROM notification_alerts a
    USING unnest($1::bigint[], $2::text[]) AS d(rule_id, subject)
    WHERE a.rule_id = d.rule_id
      AND a.subject = d.subject
    RETURNING a.rule_id, a.subject, a.since, a.details
)
INSERT INTO notifications (rule_id, channel_id, dedup_key, event, state, details)
SELECT r.id, r.channel_id,
       r.kind || ':' || r.id || ':' || x.subject || ':' || extract(epoch FROM x.since) || ':resolved',
       r.kind, 'resolved', x.details || jsonb_build_object('since', x.since, 'resolved_at', now())
FROM closed x
JOIN notification_rules r ON r.id = x.rule_id
JOIN notification_channels c ON c.id = r.channel_id
WHERE r.enabled
  AND c.enabled
  AND (r.kind <> 'scheduler_stale'
       OR EXISTS (SELECT 1 FROM scheduler_instances i WHERE i.id = x.details ->> 'instance'))
ON CONFLICT (dedup_key) DO NOTHING;

-- the API: channels, rules, the delivery history ------------------------------------------

-- name: list_channels
-- Every channel, by name.
SELECT id, name, kind, config, secret_config IS NOT NULL AS has_secret, secret_config,
       enabled, created_at, updated_at
FROM notification_channels
ORDER BY name;

-- name: get_channel
-- One channel by id ($1) or name ($2).
SELECT id, name, kind, config, secret_config IS NOT NULL AS has_secret, secret_config,
       enabled, created_at, updated_at
FROM notification_channels
WHERE id = $1 OR name = $2
ORDER BY id = $1 DESC
LIMIT 1;

-- name: lock_channel
-- Lock channel $1 until the transaction ends: an edit writes every field of the row it
-- read, so no concurrent edit may come in between.
SELECT id FROM notification_channels WHERE id = $1 FOR UPDATE;

-- name: insert_channel
INSERT INTO notification_channels (name, kind, config, secret_config, enabled)
VALUES ($1, $2, $3, $4, $5)
RETURNING id;

-- name: update_channel
UPDATE notification_channels
SET name = $2, config = $3, secret_config = $4, enabled = $5, updated_at = now()
WHERE id = $1;

-- name: delete_channel
-- Its rules and notifications go with it.
DELETE FROM notification_channels WHERE id = $1 RETURNING id;

-- name: list_rules
-- Every rule with its channel's and job's names, by name; or the one of id $1 or name $2.
SELECT r.id, r.name, r.kind, r.channel_id, c.name AS channel, r.job_id, j.name AS job, r.queue,
       r.schedule_id, r.statuses, r.within_seconds, r.threshold, r.max_per_hour, r.enabled,
       r.created_at, r.updated_at
FROM notification_rules r
JOIN notification_channels c ON c.id = r.channel_id
LEFT JOIN jobs j ON j.id = r.job_id
WHERE ($1::bigint IS NULL AND $2::text IS NULL) OR r.id = $1 OR r.name = $2
ORDER BY r.name;

-- name: lock_rule
-- Lock rule $1 until the transaction ends (as lock_channel).
SELECT id FROM notification_rules WHERE id = $1 FOR UPDATE;

-- name: insert_rule
INSERT INTO notification_rules (name, kind, channel_id, job_id, queue, schedule_id, statuses,
                                within_seconds, threshold, max_per_hour, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING id;

-- name: update_rule
-- A changed rule starts afresh: its open alerts go (they notify again if still true).
WITH forget AS (
    DELETE FROM notification_alerts WHERE rule_id = $1
)
UPDATE notification_rules
SET name = $2, channel_id = $3, job_id = $4, queue = $5, schedule_id = $6, statuses = $7,
    within_seconds = $8, threshold = $9, max_per_hour = $10, enabled = $11, updated_at = now()
WHERE id = $1;

-- name: delete_rule
DELETE FROM notification_rules WHERE id = $1 RETURNING id;

-- name: insert_test_notification
-- "Send a test" to channel $1 (for rule $2 if given): delivered by the schedulers' loop.
INSERT INTO notifications (rule_id, channel_id, dedup_key, event, state, details)
VALUES ($2, $1::bigint, 'test:' || $1::bigint || ':' || gen_random_uuid(), $3, 'test', $4)
RETURNING id;

-- name: list_notifications
-- The delivery history, newest first: by status ($1), channel ($2), rule ($3); up to $4
-- before id $5.
SELECT x.id, x.rule_id, r.name AS rule, x.channel_id, c.name AS channel, x.event, x.state,
       x.details, x.status, x.attempts, x.next_attempt_at, x.last_error, x.created_at,
       x.delivered_at
FROM notifications x
JOIN notification_channels c ON c.id = x.channel_id
LEFT JOIN notification_rules r ON r.id = x.rule_id
WHERE ($1::text IS NULL OR x.status = $1)
  AND ($2::bigint IS NULL OR x.channel_id = $2)
  AND ($3::bigint IS NULL OR x.rule_id = $3)
  AND ($5::bigint IS NULL OR x.id < $5)
ORDER BY x.id DESC
LIMIT $4;
