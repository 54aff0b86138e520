-- A RabbitMQ memory or disk alarm blocks publishing connections (connection.blocked):
-- runs then wait in the outbox while ticking goes on. Each scheduler records since when
-- the broker blocks its publishing and the reason RabbitMQ gave (e.g. 'low on memory'),
-- so GET /api/scheduler/status, /metrics and the dashboard can say why nothing is
-- published. Both are NULL while publishing is not blocked.
ALTER TABLE scheduler_instances
    ADD COLUMN broker_blocked_since timestamptz,
    ADD COLUMN broker_blocked_reason text;
