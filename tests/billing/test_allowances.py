"""Recurring allowances: one promotional lot per user per calendar period, once, late after downtime, expiring with the period."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection

from billing.exceptions import AllowancePeriodLocked
from billing.models import Allowance, AllowanceIssue, CreditLot, CreditTransaction, Wallet
from billing.reconcile import check_ledger
from billing.services import allowances as allowances_service
from billing.services.allowances import issue_allowances
from billing.services.lots import expire_lots
from tests.billing.test_concurrency import run_in_threads
from tests.factories import UserFactory

D = Decimal
MONDAY_NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _allowance(**fields) -> Allowance:
    return Allowance.objects.create(
        **{"name": "Plan", "credits": D("5"), "period": "day", "expires_with_period": True, **fields}
    )


@pytest.mark.django_db
def test_an_allowance_reaches_its_users_and_groups_once_per_period_as_a_promotional_lot(settings):
    settings.REPORT_TIME_ZONE = "UTC"
    direct, member, both, outsider = UserFactory(), UserFactory(), UserFactory(), UserFactory()
    group = Group.objects.create(name="pro")
    member.groups.add(group)
    both.groups.add(group)
    allowance = _allowance()
    allowance.users.add(direct, both)
    allowance.groups.add(group)

    assert issue_allowances(now=MONDAY_NOON) == 3
    assert issue_allowances(now=MONDAY_NOON + timedelta(hours=11)) == 0  # same day: nothing more
    lots = CreditLot.objects.filter(source="allowance").select_related("transaction")
    assert sorted(lot.wallet.user_id for lot in lots) == sorted([direct.pk, member.pk, both.pk])
    for lot in lots:
        assert (lot.category, lot.amount, lot.transaction.kind) == ("promotional", D(5), "allowance")
        assert lot.expires_at == datetime(2026, 3, 3, tzinfo=UTC)  # the day's end
    assert not CreditLot.objects.filter(wallet__user=outsider).exists()
    assert check_ledger().ok


@pytest.mark.django_db
def test_after_a_missed_period_the_current_one_is_issued_late_but_once_and_the_old_lot_expires(settings):
    settings.REPORT_TIME_ZONE = "UTC"
    user = UserFactory()
    _allowance(period="day").users.add(user)
    assert issue_allowances(now=MONDAY_NOON) == 1
    # The worker is down all Tuesday; it comes back on Wednesday evening.
    wednesday = MONDAY_NOON + timedelta(days=2, hours=8)
    assert expire_lots(now=wednesday) == 1  # Monday's lot, at Monday's end
    assert issue_allowances(now=wednesday) == 1
    assert issue_allowances(now=wednesday + timedelta(minutes=1)) == 0
    starts = sorted(AllowanceIssue.objects.values_list("period_start", flat=True))
    assert [d.isoformat() for d in starts] == ["2026-03-02", "2026-03-04"]
    assert Wallet.objects.get(user=user).balance == D(5)
    assert check_ledger().ok


@pytest.mark.django_db
def test_weekly_and_monthly_allowances_follow_the_report_time_zone_and_may_never_expire(settings):
    settings.REPORT_TIME_ZONE = "America/New_York"
    user = UserFactory()
    _allowance(name="weekly", period="week").users.add(user)
    _allowance(name="monthly", period="month", expires_with_period=False).users.add(user)
    # Monday 02:00 UTC is still Sunday in New York: the week began the Monday before.
    assert issue_allowances(now=MONDAY_NOON.replace(hour=2)) == 2
    weekly = CreditLot.objects.get(transaction__reason__contains="weekly")
    assert weekly.expires_at == datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # Monday 00:00 in New York
    monthly = CreditLot.objects.get(transaction__reason__contains="monthly")
    assert monthly.expires_at is None
    assert AllowanceIssue.objects.get(allowance__name="weekly").period_start.isoformat() == "2026-02-23"


@pytest.mark.django_db
def test_an_inactive_allowance_issues_nothing():
    user = UserFactory()
    _allowance(active=False).users.add(user)
    assert issue_allowances(now=MONDAY_NOON) == 0
    assert not CreditTransaction.objects.filter(kind="allowance").exists()


@pytest.mark.django_db
def test_a_deactivated_user_gets_no_allowance_until_reactivated(settings):
    settings.REPORT_TIME_ZONE = "UTC"
    active, gone = UserFactory(), UserFactory(is_active=False)
    group = Group.objects.create(name="team")
    gone.groups.add(group)
    allowance = _allowance()
    allowance.users.add(active, gone)
    allowance.groups.add(group)
    assert issue_allowances(now=MONDAY_NOON) == 1
    assert not CreditLot.objects.filter(wallet__user=gone).exists()
    gone.is_active = True
    gone.save(update_fields=["is_active"])
    assert issue_allowances(now=MONDAY_NOON + timedelta(hours=1)) == 1  # the day's, on the next run


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_issue_each_users_allowance_once(settings):
    settings.REPORT_TIME_ZONE = "UTC"
    users = [UserFactory() for _ in range(12)]
    allowance = _allowance()
    allowance.users.add(*users)
    counts = run_in_threads(2, [lambda: issue_allowances(now=MONDAY_NOON)] * 2)
    assert sum(counts) == 12
    assert CreditTransaction.objects.filter(kind="allowance").count() == 12
    assert AllowanceIssue.objects.count() == 12
    assert check_ledger().ok


# The audit's repro: 100 credits a month, issued, then the period edited to a week (then a day) on a
# day that is not the 1st gave the same user a second (and a third) lot in the same month.
FIFTEENTH = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)  # a Tuesday


@pytest.mark.django_db
def test_an_issued_allowances_period_cannot_change_so_no_second_lot_comes_in_the_period(settings):
    settings.REPORT_TIME_ZONE = "UTC"
    user = UserFactory()
    allowance = _allowance(credits=D("100"), period="month")
    allowance.users.add(user)
    assert issue_allowances(now=FIFTEENTH) == 1

    for period in ("week", "day"):
        allowance.period = period
        with pytest.raises(AllowancePeriodLocked, match="deactivate this allowance and add a new one"):
            allowance.save()
        with pytest.raises(ValidationError) as refused:
            allowance.full_clean()
        assert "period" in refused.value.message_dict
    allowance.refresh_from_db()
    assert allowance.period == "month"
    assert issue_allowances(now=FIFTEENTH + timedelta(hours=1)) == 0
    assert Wallet.objects.get(user=user).balance == D(100)


@pytest.mark.django_db
def test_an_allowances_period_may_change_until_it_was_first_issued_and_its_other_fields_anytime(settings):
    settings.REPORT_TIME_ZONE = "UTC"
    user = UserFactory()
    allowance = _allowance(credits=D("100"), period="month")
    allowance.users.add(user)
    allowance.period = "week"
    allowance.full_clean()
    allowance.save()  # never issued: any period
    assert issue_allowances(now=FIFTEENTH) == 1

    # credits and expires_with_period apply from the next period on: no second lot in this one.
    allowance.credits, allowance.expires_with_period, allowance.name = D("7"), False, "Plan B"
    allowance.full_clean()
    allowance.save()
    assert issue_allowances(now=FIFTEENTH + timedelta(hours=1)) == 0
    lot = CreditLot.objects.get(wallet__user=user)
    assert (lot.amount, lot.expires_at) == (D(100), datetime(2026, 12, 21, tzinfo=UTC))
    assert issue_allowances(now=FIFTEENTH + timedelta(days=6)) == 1  # next Monday: the new terms
    newest = CreditLot.objects.filter(wallet__user=user).latest("id")
    assert (newest.amount, newest.expires_at) == (D(7), None)


@pytest.mark.django_db
def test_a_period_changed_while_the_job_was_issuing_rolls_that_issue_back(settings, monkeypatch):
    # The job read the allowance (a month) before staff saved a week and before its first issue
    # committed: that issue must not go through under the old period, or the week's would follow.
    settings.REPORT_TIME_ZONE = "UTC"
    user = UserFactory()
    allowance = _allowance(credits=D("100"), period="month")
    allowance.users.add(user)
    real_period_start = allowances_service.period_start

    def staff_saved_a_week_after_the_job_read_a_month(period, now):
        Allowance.objects.filter(pk=allowance.pk).update(period="week")
        return real_period_start(period, now)

    monkeypatch.setattr(allowances_service, "period_start", staff_saved_a_week_after_the_job_read_a_month)
    assert issue_allowances(now=FIFTEENTH) == 0
    assert not CreditTransaction.objects.filter(kind="allowance").exists()
    monkeypatch.undo()
    assert issue_allowances(now=FIFTEENTH) == 1  # the next run, under the new period
    assert AllowanceIssue.objects.get().period_start.isoformat() == "2026-12-14"


def _closing(job):
    """`job` on a pool thread, which closes its own database connection when done."""

    def run(**kwargs):
        try:
            return job(**kwargs)
        finally:
            connection.close()

    return run


@pytest.mark.django_db(transaction=True)
def test_a_period_saved_while_the_first_issue_is_being_written_waits_for_it_and_is_refused(
    settings, monkeypatch
):
    settings.REPORT_TIME_ZONE = "UTC"
    user = UserFactory()
    allowance = _allowance(credits=D("100"), period="month")
    allowance.users.add(user)
    issuing_now, release = threading.Event(), threading.Event()
    real_append = allowances_service.append

    def append_slowly(**kwargs):
        issuing_now.set()
        release.wait(10)
        return real_append(**kwargs)

    monkeypatch.setattr(allowances_service, "append", append_slowly)

    def staff_saves_a_week():
        edited = Allowance.objects.get(pk=allowance.pk)
        edited.period = "week"
        edited.save()

    with ThreadPoolExecutor(max_workers=2) as pool:
        issuing = pool.submit(_closing(issue_allowances), now=FIFTEENTH)
        assert issuing_now.wait(10)
        saving = pool.submit(_closing(staff_saves_a_week))
        time.sleep(0.5)
        assert not saving.done()  # waits for the issue's transaction
        release.set()
        assert issuing.result(10) == 1
        with pytest.raises(AllowancePeriodLocked):
            saving.result(10)
    assert Allowance.objects.get(pk=allowance.pk).period == "month"
    assert AllowanceIssue.objects.get().period_start == date(2026, 12, 1)
