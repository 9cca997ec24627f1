"""The test suite's settings: config.settings, named so that it turns TESTING on (pyproject.toml selects it)."""

from config.settings import *  # noqa: F403
