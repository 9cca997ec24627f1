"""billing_commits_alone: the guard that lets a charge run as its own transaction.

A charge made with no transaction open is one statement, sent on its own and committed by
PostgreSQL as it ends: no BEGIN and no COMMIT round trip. Only a move that crosses no line may
commit that way, since a crossing's event (a balance line, a cap's alert percent) is recorded by
Python in the charge's transaction (billing.services.charging says how). The statement gives this
function whether its move stays on one side of every line; when it does not, the function aborts the
statement (SQLSTATE CD001, nothing written) and the charge is made again in a transaction.

The function's text is frozen here.
"""

from django.db import migrations

COMMITS_ALONE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION billing_commits_alone(p_may boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
-- True when the statement may commit on its own; else the statement is aborted (rolled back whole).
BEGIN
    IF p_may IS NOT TRUE THEN
        RAISE EXCEPTION 'This charge crosses a line whose event is recorded in a transaction.'
            USING ERRCODE = 'CD001', HINT = 'Make the charge again inside a transaction.';
    END IF;
    RETURN true;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0025_hold_expiry_index_for_the_sweep_alone")]

    operations = [
        migrations.RunSQL(COMMITS_ALONE_FUNCTION, "DROP FUNCTION IF EXISTS billing_commits_alone(boolean);"),
    ]
