"""The database itself refuses UPDATE and DELETE on the credit ledger."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION billing_credittransaction_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'billing_credittransaction is append-only: % refused; record a correction as a new row', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_credittransaction_append_only
    BEFORE UPDATE OR DELETE ON billing_credittransaction
    FOR EACH ROW EXECUTE FUNCTION billing_credittransaction_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS billing_credittransaction_append_only ON billing_credittransaction;
DROP FUNCTION IF EXISTS billing_credittransaction_append_only();
"""


def install(apps, schema_editor):
    schema_editor.execute(FORWARD, params=None)


def uninstall(apps, schema_editor):
    schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
