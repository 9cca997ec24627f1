from datetime import UTC, datetime

from django.test import override_settings

from web.templatetags.dates import expiry


def test_an_expiry_at_local_midnight_reads_as_the_day_it_ends():
    assert expiry(datetime(2026, 12, 11, tzinfo=UTC)) == "end of 2026-12-10"
    assert expiry(datetime(2026, 12, 11, 0, 0, 1, tzinfo=UTC)) == "2026-12-11 00:00 UTC"
    assert expiry(None) == "never"


@override_settings(REPORT_TIME_ZONE="Europe/Paris")
def test_the_day_is_the_periods_zone_and_says_so():
    # Midnight in Paris (the zone keys' days and periods are counted in) is 23:00 UTC the day before.
    assert expiry(datetime(2026, 12, 10, 23, 0, tzinfo=UTC)) == "end of 2026-12-10 (CET)"
    assert expiry(datetime(2026, 12, 11, 0, 0, tzinfo=UTC)) == "2026-12-11 00:00 UTC"
