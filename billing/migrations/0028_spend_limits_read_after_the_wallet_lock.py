"""The spend limits a call counts against, read and counted by two database functions.

The reservation and the charge each lock the wallet's row, then read the limits the call counts
against: the wallet's spending caps and the call's key limit. As a part of their one statement, that
read saw the limits as of the statement's start, which may be before the wallet lock was granted: a
cap set while the statement waited for the lock (set_spend_cap writes under the same lock) was
invisible to it, so the reservation did not check the new cap and the charge did not count its cost
in it, and the cap's counter stayed short for the rest of its period. A VOLATILE PL/pgSQL function's
statements each take a fresh snapshot when they start, after the caller's lock was granted (the
technique billing_burn_lots uses for the lots, billing.services.lots), so they read every limit
committed before the lock:

- billing_call_limits: the reservation's read, each row locked (a caller reads its period's charges
  as its own statement decides);
- billing_count_call: the charge's count. A call counts in the period it was made in, the one its
  usage rollups file it under: a call made in the counter's period adds to it, a call made in a later
  one starts it anew, and a call made in a period the counter has already left (a stream's hold
  charged after midnight by release_expired_holds) counts in no current period's counter. Returns
  each limit as counted, with what this call added to it (`counted`, for the cap alerts).

The functions' text is frozen here.
"""

from django.db import migrations

# The limits a call counts against: the wallet's caps (through their own index, at most one of each
# kind) and the call's own key limit by its key. A wallet whose user opened hundreds of keys (revoked
# ones keep their rows) costs a call what a wallet with one does, whatever plan the statistics made.
_LIMITS_OF_THE_CALL = """
        spend_limit.id = ANY (ARRAY(
            SELECT cap.id FROM billing_spendlimit cap
            WHERE cap.wallet_id = p_wallet_id AND cap.kind <> 'key'
            UNION ALL
            SELECT key_limit.id FROM billing_spendlimit key_limit
            WHERE key_limit.id = p_key_limit_id AND key_limit.wallet_id = p_wallet_id
        ))"""

CALL_LIMITS_FUNCTION = rf"""
CREATE OR REPLACE FUNCTION billing_call_limits(p_wallet_id bigint, p_key_limit_id bigint)
RETURNS SETOF billing_spendlimit
LANGUAGE plpgsql VOLATILE
AS $$
-- The limits a call on wallet p_wallet_id with key limit p_key_limit_id (null: none) counts
-- against, locked. The caller holds the wallet's row lock: this statement's snapshot is taken after
-- it was granted, so a cap set while the caller waited for the lock is read.
BEGIN
    RETURN QUERY
    SELECT spend_limit.* FROM billing_spendlimit spend_limit
    WHERE {_LIMITS_OF_THE_CALL}
    FOR UPDATE OF spend_limit;
END
$$;
"""  # noqa: S608 - our table, no input

# The first day of the call's period for a limit (null for a limit that never resets), and where
# the call falls for the limit's counter: in its period, or in a later one (the calendar moved on
# since the counter's last call: it starts anew). Neither: a period the counter has already left.
_CALL_START = (
    "CASE spend_limit.period WHEN 'day' THEN p_day WHEN 'week' THEN p_week WHEN 'month' THEN p_month END"
)
_IN_ITS_PERIOD = f"spend_limit.period_start IS NOT DISTINCT FROM ({_CALL_START})"
_IN_A_LATER_ONE = f"""spend_limit.period_start IS DISTINCT FROM ({_CALL_START}) AND (
                spend_limit.period_start IS NULL OR ({_CALL_START}) IS NULL
                OR ({_CALL_START}) > spend_limit.period_start
            )"""

COUNT_CALL_FUNCTION = rf"""
CREATE OR REPLACE FUNCTION billing_count_call(
    p_wallet_id bigint, p_key_limit_id bigint, p_cost numeric,
    p_hold_limit_id bigint, p_hold_amount numeric,
    p_day date, p_week date, p_month date, p_now timestamptz
) RETURNS TABLE (
    id bigint, kind varchar, amount numeric, spent numeric, counted numeric,
    period_start date, alerted_percent smallint, alerted_period_start date
)
LANGUAGE plpgsql VOLATILE
AS $$
-- Count a call's cost p_cost against the limits it counts against (billing_call_limits' rows) and
-- give its key limit back the hold p_hold_amount that reserved it there (p_hold_limit_id). The
-- call's periods start on p_day, p_week and p_month (local days). The caller holds the wallet's row
-- lock, so this statement reads every limit committed before it was granted. `counted`: what the
-- call added to the limit's counter (0 for a period the counter has left).
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE billing_spendlimit spend_limit
    SET spent = CASE
            WHEN {_IN_ITS_PERIOD} THEN spend_limit.spent + p_cost
            WHEN {_IN_A_LATER_ONE} THEN p_cost
            ELSE spend_limit.spent
        END,
        period_start = CASE WHEN {_IN_A_LATER_ONE} THEN ({_CALL_START}) ELSE spend_limit.period_start END,
        held = spend_limit.held
            - CASE WHEN spend_limit.id = p_hold_limit_id THEN p_hold_amount ELSE 0 END,
        updated_at = p_now
    WHERE {_LIMITS_OF_THE_CALL}
    -- After the update, a counter the call counted in is in the call's period.
    RETURNING spend_limit.id, spend_limit.kind, spend_limit.amount, spend_limit.spent,
        CASE WHEN {_IN_ITS_PERIOD} THEN p_cost ELSE 0::numeric END,
        spend_limit.period_start, spend_limit.alerted_percent, spend_limit.alerted_period_start;
END
$$;
"""  # noqa: S608 - our table, no input


class Migration(migrations.Migration):
    dependencies = [("billing", "0027_usage_by_api_key")]

    operations = [
        migrations.RunSQL(
            CALL_LIMITS_FUNCTION, "DROP FUNCTION IF EXISTS billing_call_limits(bigint, bigint);"
        ),
        migrations.RunSQL(
            COUNT_CALL_FUNCTION,
            "DROP FUNCTION IF EXISTS billing_count_call("
            "bigint, bigint, numeric, bigint, numeric, date, date, date, timestamptz);",
        ),
    ]
