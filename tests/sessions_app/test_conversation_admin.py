"""Admin smoke tests of the conversation's pages: tool runs, files and summaries are view-only."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["toolcallevent", "userfile", "sessionsummary"])
def test_conversation_admin_pages_are_view_only(admin_client, model):
    changelist = admin_client.get(reverse(f"admin:sessions_app_{model}_changelist"))
    assert changelist.status_code == 200
    assert admin_client.get(reverse(f"admin:sessions_app_{model}_add")).status_code == 403
