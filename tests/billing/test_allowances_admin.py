"""The allowances page: a period fixed once issued, said on the field; a page that still saves with
hundreds of issues or over a thousand users; the list's activate and deactivate actions; every issue, read-only."""

from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from billing.forms import AllowanceForm
from billing.models import Allowance, AllowanceIssue, Wallet
from billing.services.allowances import issue_allowances
from tests.factories import StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()

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
        "users": ",".join(str(user.pk) for user in allowance.users.all()),
        "groups": [group.pk for group in allowance.groups.all()],
        "_save": "Save",
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


class _FormFields(HTMLParser):
    """The fields a browser posts from the page's change form, as (name, value) pairs."""

    def __init__(self):
        super().__init__()
        self.pairs: list[tuple[str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "allowance_form":
            self._in_form = True
        if not self._in_form or "disabled" in attrs:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            if kind == "submit" and name != "_save":
                return
            self.pairs.append((name, attrs.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.pairs.append((self._select, attrs.get("value", "")))
        elif tag == "textarea":
            self._textarea = name
            self.pairs.append((name, ""))

    def handle_data(self, data):
        if self._textarea:
            self.pairs[-1] = (self._textarea, self.pairs[-1][1] + data)

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _posted_as_a_browser_would(page, **changes) -> str:
    """The change form's fields as the page holds them (one pair per hidden input, selected option,
    ticked box...), with `changes` (None unticks a box), url-encoded as a browser sends them."""
    fields = _FormFields()
    fields.feed(page.content.decode())
    pairs = [(name, value) for name, value in fields.pairs if name not in changes]
    pairs += [(name, value) for name, value in changes.items() if value is not None]
    return urlencode(pairs)


def _users_with_wallets(count: int) -> list:
    users = User.objects.bulk_create(
        [User(username=f"many{i}", email=f"many{i}@example.com") for i in range(count)]
    )
    Wallet.objects.bulk_create([Wallet(user=user) for user in users])
    return users


def test_an_allowance_with_hundreds_of_issues_shows_the_newest_and_can_be_deactivated_on_its_page(
    admin_client, settings
):
    settings.REPORT_TIME_ZONE = "UTC"
    allowance = Allowance.objects.create(name="Big", credits=D("1"), period="month")
    allowance.users.add(*_users_with_wallets(600))
    assert issue_allowances(now=FIFTEENTH) == 600
    url = reverse("admin:billing_allowance_change", args=[allowance.pk])

    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "600 lot(s) issued; the newest 20:" in html
    assert html.count("<td>2026-12-01</td>") == 20
    issues_url = reverse("admin:billing_allowanceissue_changelist") + f"?allowance__id__exact={allowance.pk}"
    assert issues_url in html

    body = _posted_as_a_browser_would(page, active=None)
    response = admin_client.post(url, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 302, response.status_code
    allowance.refresh_from_db()
    assert not allowance.active
    assert allowance.users.count() == 600
    assert AllowanceIssue.objects.filter(allowance=allowance).count() == 600


def test_an_allowance_given_to_over_a_thousand_users_directly_still_saves_from_its_page(admin_client):
    allowance = Allowance.objects.create(name="Everyone", credits=D("1"), period="month")
    users = User.objects.bulk_create([User(username=f"direct{i}") for i in range(1100)])
    allowance.users.add(*users)
    url = reverse("admin:billing_allowance_change", args=[allowance.pk])
    page = admin_client.get(url)
    assert page.status_code == 200

    body = _posted_as_a_browser_would(page, active=None, credits="2")
    response = admin_client.post(url, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 302, response.status_code
    allowance.refresh_from_db()
    assert (allowance.active, allowance.credits) == (False, D(2))
    assert allowance.users.count() == 1100


def test_every_issue_of_an_allowance_is_listed_read_only_from_its_page(admin_client, issued):
    other = Allowance.objects.create(name="Other", credits=D("1"), period="day")
    other.users.add(UserFactory())
    issue_allowances(now=FIFTEENTH)
    mine = AllowanceIssue.objects.get(allowance=issued)
    page = admin_client.get(
        reverse("admin:billing_allowanceissue_changelist"), {"allowance__id__exact": issued.pk}
    )
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [mine]
    assert admin_client.get(reverse("admin:billing_allowanceissue_change", args=[mine.pk])).status_code == 200
    assert admin_client.get(reverse("admin:billing_allowanceissue_add")).status_code == 403
    assert admin_client.get(reverse("admin:billing_allowanceissue_delete", args=[mine.pk])).status_code == 403


def test_whoever_may_read_allowances_may_read_their_issues(client, issued):
    staff = StaffUserFactory()
    client.force_login(staff)
    issues = reverse("admin:billing_allowanceissue_changelist")
    assert client.get(issues).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_allowance"))
    staff = User.objects.get(pk=staff.pk)  # a fresh permission cache
    client.force_login(staff)
    assert client.get(issues).status_code == 200
    page = client.get(reverse("admin:billing_allowance_change", args=[issued.pk])).content.decode()
    assert "All 1 issues of this allowance" in page


def test_the_list_deactivates_and_activates_the_selected_allowances_and_says_so(admin_client, issued):
    off = Allowance.objects.create(name="Off", credits=D("1"), period="day", active=False)
    changelist = reverse("admin:billing_allowance_changelist")

    response = admin_client.post(
        changelist, {"action": "deactivate", "_selected_action": [issued.pk, off.pk]}, follow=True
    )
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Deactivated 1 allowance.",
        "1 allowance was inactive already; nothing changed there.",
    ]
    assert not Allowance.objects.filter(active=True).exists()
    assert issue_allowances(now=FIFTEENTH.replace(month=11)) == 0  # nothing while inactive
    assert LogEntry.objects.get(object_id=str(issued.pk)).get_change_message() == "Deactivated"

    response = admin_client.post(
        changelist, {"action": "activate", "_selected_action": [issued.pk, off.pk]}, follow=True
    )
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Activated 2 allowances."]
    assert Allowance.objects.filter(active=True).count() == 2
    assert AllowanceIssue.objects.count() == 1  # switching issued nothing itself


def test_the_switch_actions_need_the_change_permission(client, issued):
    staff = StaffUserFactory()
    staff.user_permissions.add(Permission.objects.get(codename="view_allowance"))
    client.force_login(staff)
    changelist = reverse("admin:billing_allowance_changelist")
    assert client.get(changelist).context["action_form"] is None  # no action offered to a reader
    client.post(changelist, {"action": "deactivate", "_selected_action": [issued.pk]})
    issued.refresh_from_db()
    assert issued.active
