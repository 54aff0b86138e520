-- How many times an attempt was taken over from a worker that died running it. At the
-- delivery limit, only a run that was executing (alone) at every delivery ends 'dead';
-- the others were bystanders of the crashes and get a fresh message.
ALTER TABLE runs ADD COLUMN takeovers integer NOT NULL DEFAULT 0;
