"""The burn as a database function (called by the charge's one statement), and every wallet's opening lot or debt.

The function's text is frozen here; billing/services/lots.py says why the burn is a function.
"""

from django.db import migrations

BURN_FUNCTION = r"""
CREATE OR REPLACE FUNCTION billing_burn_lots(
    p_wallet_id bigint, p_transaction_id bigint, p_amount numeric, p_now timestamptz
) RETURNS numeric
LANGUAGE plpgsql VOLATILE
AS $$
-- Burn p_amount from the wallet's live lots in the pinned order, record each lot's part as an
-- allocation of ledger row p_transaction_id, and put what no live lot covers on the wallet's debt.
-- Returns that uncovered part. The caller holds the wallet's row lock. VOLATILE and PL/pgSQL on
-- purpose: in READ COMMITTED each statement below takes a fresh snapshot when it starts, i.e.
-- after the caller's lock was granted, so it reads every lot change committed before the lock.
DECLARE
    v_covered numeric;
BEGIN
    WITH live_lots AS (
        -- Burn order: priority, soonest expiry (never last), promotional before paid, oldest, id.
        SELECT id, remaining,
            sum(remaining) OVER (
                ORDER BY priority, expires_at NULLS LAST, category = 'paid', effective_at, id
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) - remaining AS before_it
        FROM billing_creditlot
        WHERE wallet_id = p_wallet_id AND remaining > 0 AND (expires_at IS NULL OR expires_at > p_now)
    ),
    taken AS (
        SELECT id, least(remaining, p_amount - before_it) AS amount
        FROM live_lots
        WHERE before_it < p_amount
    ),
    burned_lots AS (
        UPDATE billing_creditlot lot
        SET remaining = lot.remaining - taken.amount
        FROM taken
        WHERE lot.id = taken.id
        RETURNING lot.id, taken.amount
    ),
    allocations AS (
        INSERT INTO billing_lotallocation (transaction_id, lot_id, amount)
        SELECT p_transaction_id, id, amount FROM burned_lots
        RETURNING amount
    )
    SELECT coalesce(sum(amount), 0) INTO v_covered FROM allocations;
    IF v_covered < p_amount THEN
        INSERT INTO billing_lotallocation (transaction_id, lot_id, amount)
        VALUES (p_transaction_id, NULL, p_amount - v_covered);
        UPDATE billing_wallet SET debt = debt + (p_amount - v_covered) WHERE id = p_wallet_id;
    END IF;
    RETURN p_amount - v_covered;
END
$$;
"""

# Each wallet's balance when lots began: a positive one becomes one paid, never-expiring lot tied to
# the wallet's last ledger row; a negative one becomes its debt. Set-based (one pass over the wallets,
# one index probe each into the ledger), so a million-row ledger migrates in seconds.
OPENING_LOTS = r"""
INSERT INTO billing_creditlot (wallet_id, transaction_id, source, category, priority, effective_at,
    expires_at, amount, remaining, debt_paid, created_at)
SELECT wallet.id, last_row.id, 'opening', 'paid', 50, now(), NULL, wallet.balance, wallet.balance, 0, now()
FROM billing_wallet wallet
CROSS JOIN LATERAL (
    SELECT id FROM billing_credittransaction row
    WHERE row.wallet_id = wallet.id
    ORDER BY row.wallet_id DESC, row.id DESC
    LIMIT 1
) last_row
WHERE wallet.balance > 0;
UPDATE billing_wallet SET debt = -balance WHERE balance < 0;
"""

UNDO_OPENING_LOTS = r"""
DELETE FROM billing_lotallocation;
DELETE FROM billing_creditlot;
UPDATE billing_wallet SET debt = 0 WHERE debt <> 0;
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0021_credit_lots_and_allowances")]

    operations = [
        migrations.RunSQL(
            BURN_FUNCTION, "DROP FUNCTION IF EXISTS billing_burn_lots(bigint, bigint, numeric, timestamptz);"
        ),
        migrations.RunSQL(OPENING_LOTS, UNDO_OPENING_LOTS),
    ]
