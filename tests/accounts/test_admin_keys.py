"""The API keys page's revoke action, confirmed twice (two tabs): the second says what happened."""

import pytest
from django.contrib.messages import get_messages

from accounts import keys
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_confirming_a_revoke_the_other_tab_already_did_says_they_were_revoked_already(admin_client):
    key, _ = keys.create_api_key(user=UserFactory(), name="script")
    confirm = {"action": "revoke", "_selected_action": [key.pk], "apply": "yes"}
    first = admin_client.post("/admin/accounts/apikey/", confirm, follow=True)  # shown, so read
    assert [str(m) for m in get_messages(first.wsgi_request)] == ["Revoked 1 API key(s)."]
    second = admin_client.post("/admin/accounts/apikey/", confirm, follow=True)
    assert second.status_code == 200
    assert [str(m) for m in get_messages(second.wsgi_request)] == [
        "The selected keys were revoked already; nothing more was done."
    ]
