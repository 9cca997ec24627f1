"""What the console says after an action that had nothing to do, and where a form's Cancel goes."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from billing import services
from billing.models import Wallet
from sessions_app.services import take_turn
from tests.factories import ChatSessionFactory, UserFactory, fund

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_setting_enforcement_that_is_already_set_says_nothing_changed(admin_client, admin_user):
    exempt, other = UserFactory(), UserFactory()
    services.set_enforcement(user=exempt, enforcement="exempt", changed_by=admin_user)
    wallets = Wallet.objects.filter(user__in=[exempt, other])
    post = {"action": "enforcement_exempt", "_selected_action": [exempt.wallet.pk], "apply": "yes"}
    response = admin_client.post("/admin/billing/wallet/", post, follow=True)  # shown, so read
    assert messages_of(response) == ["Enforcement was exempt already on 1 wallet; nothing changed there."]

    post["_selected_action"] = [w.pk for w in wallets]
    response = admin_client.post("/admin/billing/wallet/", post, follow=True)
    assert messages_of(response) == [
        "Enforcement set to exempt on 1 wallet.",
        "Enforcement was exempt already on 1 wallet; nothing changed there.",
    ]


def test_cancel_on_a_turns_refund_form_goes_back_to_the_turn(admin_client):
    user = UserFactory()
    fund(user, "50")
    session = ChatSessionFactory(owner=user)
    turn = take_turn(session=session, user=user, content="hello").turn
    page = admin_client.get(reverse("admin:sessions_app_turn_refund", args=[turn.pk]))
    assert page.status_code == 200
    turn_url = reverse("admin:sessions_app_turn_change", args=[turn.pk])
    assert f'<a href="{turn_url}" class="closelink">Cancel</a>' in page.text


def test_cancel_on_the_ledgers_refund_form_goes_back_to_the_ledger(admin_client):
    user = UserFactory()
    fund(user, "50")
    take_turn(session=ChatSessionFactory(owner=user), user=user, content="hello")
    debit = user.wallet.transactions.filter(kind="debit").get()
    page = admin_client.post(
        reverse("admin:billing_credittransaction_changelist"),
        {"action": "refund", "index": "0", "_selected_action": [debit.pk]},
    )
    ledger = reverse("admin:billing_credittransaction_changelist")
    assert f'<a href="{ledger}" class="closelink">Cancel</a>' in page.text
