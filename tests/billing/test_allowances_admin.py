"""The allowances page: a period fixed once issued, said on the field."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.forms import AllowanceForm
from billing.models import Allowance, AllowanceIssue
from billing.services.allowances import issue_allowances
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

D = Decimal
FIFTEENTH = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)


def _change_body(allowance: Allowance, **fields) -> dict:
    """What the change page posts: the allowance's fields as they are, with `fields` changed."""
    body = {
        "name": allowance.name,
        "credits": str(allowance.credits),
        "period": allowance.period,
        "expires_with_period": "on" if allowance.expires_with_period else "",
        "active": "on" if allowance.active else "",
        "users": [user.pk for user in allowance.users.all()],
        "groups": [group.pk for group in allowance.groups.all()],
        "_save": "Save",
        # The issues inline's management form (its rows are read-only, nothing of them is taken).
        "issues-TOTAL_FORMS": "0",
        "issues-INITIAL_FORMS": "0",
    }
    return {key: value for key, value in {**body, **fields}.items() if value not in ("", None)}


@pytest.fixture
def issued(settings):
    """100 credits a month, issued to one user on the 15th."""
    settings.REPORT_TIME_ZONE = "UTC"
    user = UserFactory()
    allowance = Allowance.objects.create(name="Monthly", credits=D("100"), period="month")
    allowance.users.add(user)
    assert issue_allowances(now=FIFTEENTH) == 1
    return allowance


def test_an_issued_allowances_period_is_read_only_on_its_page_and_says_what_to_do(admin_client, issued):
    url = reverse("admin:billing_allowance_change", args=[issued.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'name="period"' not in page.content.decode()
    assert "deactivate this allowance and add a new one" in page.content.decode()

    response = admin_client.post(url, _change_body(issued, period="week", credits="7"))
    assert response.status_code == 302
    issued.refresh_from_db()
    assert (issued.period, issued.credits) == ("month", D(7))  # the period posted is not taken
    assert issue_allowances(now=FIFTEENTH) == 0
    assert AllowanceIssue.objects.count() == 1


def test_a_never_issued_allowances_period_can_be_edited_on_its_page(admin_client):
    allowance = Allowance.objects.create(name="Fresh", credits=D("5"), period="month")
    url = reverse("admin:billing_allowance_change", args=[allowance.pk])
    assert 'name="period"' in admin_client.get(url).content.decode()
    assert admin_client.post(url, _change_body(allowance, period="week")).status_code == 302
    allowance.refresh_from_db()
    assert allowance.period == "week"


def test_the_allowance_form_refuses_a_new_period_on_the_field_once_issued(issued):
    # The page was opened before the first issue (the field was editable) and posted after it.
    form = AllowanceForm(instance=issued, data=_change_body(issued, period="week"))
    assert not form.is_valid()
    assert "deactivate this allowance and add a new one" in form.errors["period"][0]
    issued.refresh_from_db()
    assert issued.period == "month"
