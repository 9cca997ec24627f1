"""The test suite's settings: config.settings, named so that it turns TESTING on (pyproject.toml selects it)."""

from config.settings import *  # noqa: F403

# A "replica" alias that mirrors the test database (Django's TEST MIRROR: its own connection to the
# same database), so tests/core/test_replica.py can prove which reads go where. Routing to it stays
# off unless a test sets DATABASE_REPLICA_URL (core.replica.configured()).
DATABASES.setdefault(  # noqa: F405
    "replica",
    {
        **DATABASES["default"],  # noqa: F405
        "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),  # noqa: F405
        "TEST": {"MIRROR": "default"},
    },
)

# WhiteNoise scans STATIC_ROOT (hundreds of files once collectstatic has run) whenever a middleware
# chain is built, that is for every test client: about 35 ms each, two minutes of the suite on a 2-core machine. No
# test serves a static file in process (the servers tests start run the deployed settings, which
# scan once per process), so the test run finds a file when it is asked for (WhiteNoise's
# development mode) instead.
WHITENOISE_AUTOREFRESH = True
