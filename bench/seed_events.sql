-- Generate call events in SQL, month by month, into the partitioned billing_llmcallevent: the 100M-event run.
--
-- On a separate database whose schema is migrated and whose users and prices exist (docs/scaling-data.md):
--   createdb -h 127.0.0.1 -U postgres creditdesk_100m
--   export DATABASE_URL=postgres://postgres@127.0.0.1:5432/creditdesk_100m SECRET_KEY=bench
--   .venv/bin/python manage.py migrate
--   .venv/bin/python bench/seed.py --users 10000 --events 0 --ledger 0 --heavy-rows 0
--   psql -h 127.0.0.1 -U postgres -d creditdesk_100m -v months=24 -v per_month=4166667 -f bench/seed_events.sql
--   .venv/bin/python manage.py rebuild_usage_rollup      # the reports read the rollups
--
-- :months whole UTC months before the current one, :per_month events each (24 x 4,166,667 = 100M),
-- evenly spread over the month (ids rise with time, as in production). Each month is loaded into a
-- plain table without indexes, indexed, given a CHECK on its range (so ATTACH needs no scan), then
-- attached: the same indexes as the parent's are adopted, not rebuilt. The foreign keys (user, key)
-- are validated by the ATTACH. Users are the existing ones; each sticks to one model 80% of the time;
-- 2% of calls failed (cost 0), 1% were shadow refusals; the prices are the models' current ones.
-- Progress: one NOTICE per month. Rerunnable: a month whose partition exists is skipped.

\set ON_ERROR_STOP on
\timing on

CREATE OR REPLACE FUNCTION pg_temp.seed_month(month_start timestamptz, per_month bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('billing_llmcallevent_y%sm%s', to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
    month_end timestamptz := month_start + interval '1 month';
    step interval := (month_end - month_start) / per_month;
    first_id bigint;
    users bigint[];
    models text[];
    input_prices numeric[];
    output_prices numeric[];
    started timestamptz := clock_timestamp();
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RAISE NOTICE '% exists: skipped', part;
        RETURN;
    END IF;
    SELECT array_agg(id ORDER BY id) INTO users FROM accounts_user WHERE username LIKE 'user%';
    -- Ids: a block of the parent's own sequence, so later charges continue after them.
    first_id := nextval(pg_get_serial_sequence('billing_llmcallevent', 'id'));
    PERFORM setval(pg_get_serial_sequence('billing_llmcallevent', 'id'), first_id + per_month);
    EXECUTE format('CREATE TABLE %I (LIKE billing_llmcallevent INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
    SELECT array_agg(model ORDER BY model), array_agg(input_price_per_1k ORDER BY model),
           array_agg(output_price_per_1k ORDER BY model)
    INTO models, input_prices, output_prices
    FROM billing_modelprice WHERE active;
    EXECUTE format($sql$
        INSERT INTO %I (id, user_id, model, provider, input_tokens, output_tokens, cost, input_price_per_1k,
            output_price_per_1k, status, error, latency_ms, shadow_refusal, purpose, used_fallback,
            spend_limit_id, end_user, created_at)
        SELECT $1 + call.g, call.user_id, $6[call.m], 'echo',
            CASE WHEN call.failed THEN 0 ELSE call.tin END,
            CASE WHEN call.failed THEN 0 ELSE call.tout END,
            CASE WHEN call.failed THEN 0
                 ELSE round((call.tin * $7[call.m] + call.tout * $8[call.m]) / 1000, 6) END,
            $7[call.m], $8[call.m],
            CASE WHEN call.failed THEN 'error' ELSE 'ok' END,
            CASE WHEN call.failed THEN 'ProviderTimeout: bench' ELSE '' END,
            CASE WHEN call.failed THEN 30000 ELSE 50 + (random() * 2950)::int END,
            random() < 0.01, 'chat', false, NULL, '',
            $2 + call.g * $3
        FROM (
            -- one row per call; the user drawn at random, its favourite model 80%% of the time
            SELECT drawn.g, drawn.user_id, drawn.tin, drawn.tout, drawn.failed,
                1 + CASE WHEN random() < 0.8 THEN drawn.user_id %% array_length($6, 1)
                         ELSE floor(random() * array_length($6, 1))::int END AS m
            FROM (
                SELECT g, $5[1 + floor(random() * array_length($5, 1))::int] AS user_id,
                    20 + floor(random() * 1981)::int AS tin,
                    10 + floor(random() * 991)::int AS tout,
                    random() < 0.02 AS failed
                FROM generate_series(0, $4 - 1) AS g
            ) AS drawn
        ) AS call
        $sql$, part)
        USING first_id, month_start, step, per_month, users, models, input_prices, output_prices;
    -- The parent's indexes, built once on the full month (attach adopts them).
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id, created_at)', part);
    EXECUTE format('CREATE INDEX ON %I (created_at)', part);
    EXECUTE format('CREATE INDEX ON %I (user_id, created_at)', part);
    EXECUTE format('CREATE INDEX ON %I (model, created_at)', part);
    EXECUTE format('CREATE INDEX ON %I (spend_limit_id, created_at) WHERE spend_limit_id IS NOT NULL', part);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (created_at >= %L AND created_at < %L)',
        part, part || '_range', month_start, month_end);
    EXECUTE format('ALTER TABLE billing_llmcallevent ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        part, month_start, month_end);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_range');
    EXECUTE format('ANALYZE %I', part);
    RAISE NOTICE '% : % events in %', part, per_month, clock_timestamp() - started;
END
$$;

-- Oldest month first; each month commits on its own (psql autocommit), so an interrupted run keeps
-- the months it finished and a rerun skips them.
SELECT format('SELECT pg_temp.seed_month(%L, %s)', m, :per_month)
FROM generate_series(
    date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => :months),
    date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 month',
    interval '1 month'
) AS m
\gexec

SELECT count(*) AS partitions, sum(c.reltuples)::bigint AS estimated_events
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'billing_llmcallevent'::regclass;
