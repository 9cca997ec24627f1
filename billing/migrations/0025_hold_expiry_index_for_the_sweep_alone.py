"""The open holds' expiry index keeps only the holds the sweep alone may close, built CONCURRENTLY.

credithold_open_expiry_idx held every open hold by expiry. A reservation expires its own wallet's
stale holds, and the plan its connection keeps could find them through that index, reading every
expired hold of every wallet that waits for the sweep (a crashed instance's streams, with progress
to charge; API keys' holds): 0.3 ms a turn at 2,000 of them. credithold_swept_expiry_idx holds only
those (progress recorded, or an API key's), which a reservation never touches, so it reads its
wallet's through credithold_open_idx; release_expired_holds reads both.

Not atomic (CREATE INDEX CONCURRENTLY cannot run in a transaction): holds stay writable while the
index builds. If it is interrupted, drop the INVALID index it leaves
(`DROP INDEX credithold_swept_expiry_idx`) and migrate again.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("billing", "0024_partition_call_events_by_month")]

    operations = [
        AddIndexConcurrently(
            model_name="credithold",
            index=models.Index(
                condition=models.Q(("status", "held"))
                & models.Q(("progress_at__isnull", False), ("spend_limit__isnull", False), _connector="OR"),
                fields=["expires_at"],
                name="credithold_swept_expiry_idx",
            ),
        ),
        RemoveIndexConcurrently(model_name="credithold", name="credithold_open_expiry_idx"),
    ]
