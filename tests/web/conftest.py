"""The user's pages are tried signed in through Django's session, as a browser is."""

import pytest
from django.test import Client


@pytest.fixture
def web(user):
    """A client signed in as `user` (the page tests' own user)."""
    client = Client()
    client.force_login(user)
    return client
