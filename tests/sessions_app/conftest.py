"""Fixtures of the conversation's tests: uploaded files go to a temporary folder, never the checkout's."""

import pytest


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings.MEDIA_ROOT
