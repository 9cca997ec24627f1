"""System checks: usage reports cut days in the zone the rollups were built for, or say so."""

from django.conf import settings
from django.core.checks import Warning, register
from django.db import DatabaseError

from billing.rollup import built_for_time_zone


@register(deploy=False)
def check_rollup_time_zone(app_configs=None, databases=None, **kwargs):
    # Only when the checks may query (migrate, runserver, check --database default), never at import.
    if not databases:
        return []
    try:
        built_for = built_for_time_zone()
    except DatabaseError:  # not migrated yet: migrate builds the rollups
        return []
    if built_for is None or built_for == settings.REPORT_TIME_ZONE:
        return []
    return [
        Warning(
            f"The usage rollups cut days in {built_for}, but REPORT_TIME_ZONE is {settings.REPORT_TIME_ZONE}: "
            "usage reports still show days in the old zone.",
            hint="Run `manage.py rebuild_usage_rollup` once (safe while the server runs).",
            id="billing.W001",
        )
    ]
