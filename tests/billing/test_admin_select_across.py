"""Actions on "select all N": the intermediate page posts back the selection, not one field per object.

Django refuses a form of more than DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) fields with a 400, and a
grant to every customer after an outage selects more wallets than that.
"""

import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages

from accounts import keys
from accounts.models import ApiKey, User
from billing.models import CreditTransaction, Wallet
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MANY = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1
WALLETS = "/admin/billing/wallet/"


def many_wallets(prefix: str, n: int = MANY) -> list[Wallet]:
    """n customers named `prefix<i>`, each with the empty wallet sign-up opens, in two statements."""
    users = User.objects.bulk_create(
        [User(username=f"{prefix}{i}", email=f"{prefix}{i}@example.com", password="!") for i in range(n)]
    )
    return Wallet.objects.bulk_create([Wallet(user=user) for user in users])


def posted_fields(page: bytes) -> int:
    """The fields the page's form posts: its inputs, selects and text areas (the buttons not pressed aside)."""
    return (
        len(re.findall(rb"<(?:input|select|textarea)\b", page)) - len(re.findall(rb'type="submit"', page)) + 1
    )


def select_all(client, url, action, wallets):
    """The changelist's "Select all N" then the action: the page's boxes ticked, and select_across."""
    return client.post(
        url,
        {
            "action": action,
            "index": "0",
            "select_across": "1",
            "_selected_action": [w.pk for w in wallets[:100]],
        },
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_grant_to_every_selected_wallet_posts_few_fields_and_grants_each_once(admin_client, admin_user):
    wallets = many_wallets("mass")
    UserFactory(username="bystander")  # not matched by the search: not granted
    url = f"{WALLETS}?q=mass"
    page = select_all(admin_client, url, "grant_credits", wallets)
    assert page.status_code == 200
    assert len(page.context["wallets"]) == MANY
    assert posted_fields(page.content) < 20
    assert b'name="select_across" value="1"' in page.content

    form = {
        "action": "grant_credits",
        "select_across": "1",
        "_selected_action": page.context["selected"],
        "selection_count": page.context["selection_count"],
        "selection_last": page.context["selection_last"],
        "apply": "yes",
        "submission": page.context["form"]["submission"].value(),
        "amount": "2.5",
        "reason": "Sorry about the outage",
    }
    late = many_wallets("mass-late", 1)[0]  # made after the page was shown: matches, but was not seen
    done = admin_client.post(url, form)
    assert done.status_code == 302
    assert messages_of(done) == [f"Granted 2.500000 credits to {MANY} wallets."]
    grants = CreditTransaction.objects.filter(kind=CreditTransaction.Kind.GRANT)
    assert grants.count() == MANY
    assert set(grants.values_list("wallet_id", flat=True)) == {w.pk for w in wallets}  # not `late`
    assert late.pk not in set(grants.values_list("wallet_id", flat=True))
    assert set(grants.values_list("initiated_by_id", flat=True)) == {admin_user.pk}
    assert set(Wallet.objects.filter(pk__in=[w.pk for w in wallets]).values_list("balance", flat=True)) == {
        Decimal("2.5")
    }
    assert LogEntry.objects.filter(change_message__startswith="Granted").count() == MANY

    # The same form again (a double click): nothing more is granted.
    again = admin_client.post(url, form)
    assert again.status_code == 302
    assert grants.count() == MANY
    assert "already submitted" in messages_of(again)[-1]


def test_adjust_of_every_selected_wallet_posts_select_across_not_the_ids(admin_client):
    wallets = many_wallets("adj")
    page = select_all(admin_client, f"{WALLETS}?q=adj", "adjust_credits", wallets)
    assert page.status_code == 200
    assert len(page.context["rows"]) == MANY
    assert posted_fields(page.content) < 20
    assert b'name="select_across" value="1"' in page.content


def test_enforcement_on_every_selected_wallet_posts_few_fields_and_sets_each(admin_client):
    wallets = many_wallets("enf")
    url = f"{WALLETS}?q=enf"
    page = select_all(admin_client, url, "enforcement_exempt", wallets)
    assert page.status_code == 200
    assert posted_fields(page.content) < 10
    done = admin_client.post(
        url,
        {
            "action": "enforcement_exempt",
            "select_across": "1",
            "_selected_action": page.context["selected"],
            "apply": "yes",
        },
    )
    assert done.status_code == 302
    assert Wallet.objects.filter(enforcement=Wallet.Enforcement.EXEMPT).count() == MANY


def test_an_action_on_some_selected_rows_still_posts_their_ids(admin_client, admin_user):
    wallets = many_wallets("few", 3)
    page = admin_client.post(
        WALLETS, {"action": "grant_credits", "index": "0", "_selected_action": [w.pk for w in wallets[:2]]}
    )
    assert sorted(page.context["selected"]) == sorted(w.pk for w in wallets[:2])
    assert b'name="select_across"' not in page.content


def test_revoking_every_selected_key_posts_select_across(admin_client):
    owner = UserFactory()
    created = [keys.create_api_key(user=owner, name=f"k{i}")[0] for i in range(3)]
    page = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke", "index": "0", "select_across": "1", "_selected_action": [created[0].pk]},
    )
    assert page.status_code == 200
    assert b'name="select_across" value="1"' in page.content
    done = admin_client.post(
        "/admin/accounts/apikey/",
        {
            "action": "revoke",
            "select_across": "1",
            "_selected_action": page.context["selected"],
            "apply": "yes",
        },
    )
    assert done.status_code == 302
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()


def test_select_all_confirmed_after_the_rows_changed_does_nothing_and_says_so(admin_client):
    """A row the page showed that no longer matches (or one that came to match below the last shown)
    makes the rows found again other than those confirmed: nothing is written."""
    wallets = many_wallets("gone", 5)
    url = f"{WALLETS}?q=gone"
    page = select_all(admin_client, url, "adjust_credits", wallets)
    assert page.context["selection_count"] == 5
    User.objects.filter(pk=wallets[0].user_id).update(username="renamed", email="r@example.com")  # unmatched

    done = admin_client.post(
        url,
        {
            "action": "adjust_credits",
            "select_across": "1",
            "_selected_action": page.context["selected"],
            "selection_count": page.context["selection_count"],
            "selection_last": page.context["selection_last"],
            "apply": "yes",
            "submission": page.context["form"]["submission"].value(),
            "amount": "-1",
            "reason": "Correction",
        },
    )

    assert done.status_code == 302
    assert (
        "changed since the confirmation page was shown (5 then, 4 now): nothing was done"
        in messages_of(done)[0]
    )
    assert not CreditTransaction.objects.filter(kind=CreditTransaction.Kind.ADJUSTMENT).exists()
