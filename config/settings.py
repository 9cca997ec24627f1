"""The one settings module: every difference between environments is an environment variable."""

import warnings
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


class StrictEnv(environ.Env):
    """django-environ, strict: a value that is not what its setting needs stops start-up, naming it.

    Plain django-environ reads `CREDIT_ENFORCEMENT_ENABLED=maybe` as false (enforcement off, silently)
    and `WEBHOOK_TIMEOUT_SECONDS=nan` as "could not convert string to float: ''". Here a switch is one
    of true/false, 1/0, yes/no, on/off (any case; empty is false); a number is a plain decimal number
    (NaN and inf pass to the system checks, which say what the setting allows).
    """

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(f"{self.prefix}{var}")
        if raw is None or cast not in (bool, int, float, Decimal):
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        text = raw.strip()
        if text == "" and default is None:
            return None  # as django-environ: empty means unset where the default is None
        try:
            if cast is bool:
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError
                return text.lower() in _TRUE
            return cast(text)
        except (ValueError, ArithmeticError):
            kind = {
                bool: "a switch: true or false (also 1/0, yes/no, on/off)",
                int: "a whole number",
                float: "a number",
                Decimal: "a decimal amount (e.g. 1.5)",
            }[cast]
            raise ImproperlyConfigured(f"{var}={raw!r} is not {kind}: set it to one, or unset it.") from None

    def decimal(self, var, default=environ.Env.NOTSET) -> Decimal:
        """A decimal amount, read exactly (never through a float)."""
        return self.get_value(var, cast=Decimal, default=Decimal(default))


env = StrictEnv()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

# The test suite runs with DEBUG off and needs no real secret. It says so by the settings module it
# names: pytest selects config.settings_test (pyproject.toml), this module under the test run's name.
TESTING = env.str("DJANGO_SETTINGS_MODULE", default="") == "config.settings_test"

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY in the environment "
            "(or DEBUG=true for local development)."
        )
    SECRET_KEY = "django-insecure-local-development-and-tests-only"
# Rotating SECRET_KEY: the old key(s), comma-separated, still accepted for what they signed (sessions,
# password reset links) until those expire; new ones are signed with SECRET_KEY only.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # django.contrib.admin, with the support console (web.console.ConsoleSite) as admin.site.
    "web.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "knox",
    "axes",
    "django_filters",
    "drf_spectacular",
    "procrastinate.contrib.django",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc assets, served by the project (docs work offline)
    "core",
    "accounts",
    "billing",
    "sessions_app",
    "reporting",
    "notifications",
    "web",  # the user's own pages at / and the console's customer page
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything that may answer (django-cors-headers): preflights and CORS headers on /v1/ and /api/v1/.
    "corsheaders.middleware.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.RequestBodyLimitMiddleware",
    "core.middleware.APIErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After messages: a changelist filter with a NUL, or one the database cannot compare, is a message.
    "core.middleware.AdminListQueryMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.security.ContentSecurityPolicyMiddleware",
    "core.security.PrivateResponsesMiddleware",
    "core.throttling.AdminLoginThrottleMiddleware",
    # Last: turns a lockout flagged during authentication into the lockout page (accounts.lockout).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
# Every API path answers with and without its trailing slash; never redirect a POST.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
# `make serve` (config/asgi.py): threads per process for every request but streams, which run on the
# event loop. Keep it near DATABASE_POOL_MAX_SIZE: each thread holds a connection while it works.
WEB_THREADS = env.int("WEB_THREADS", default=4)
# `make serve`: uvicorn processes. scripts/serve.sh passes the variable itself; it is read here too so
# that a value that is no whole number stops start-up and `check` refuses one below 1 (core.E003),
# which uvicorn would quietly run as one process.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=2)
# `make serve`: how long (ms) a thread running Python may keep the interpreter while another waits for
# it (sys.setswitchinterval; Python's default is 5). The event loop relays streams while the pool's
# threads run requests; at 5 ms a stream's next piece could wait 5 ms per thread ahead of it (a burst's
# first-chunk p99 up to 20 ms behind the model, about 1 ms at 1; plain requests unchanged: docs/performance.md).
WEB_SWITCH_INTERVAL_MS = env.float("WEB_SWITCH_INTERVAL_MS", default=1.0)

# The user's own pages (web/): a signed-out visitor is sent to sign in, and comes back after.
LOGIN_URL = "web:signin"
LOGIN_REDIRECT_URL = "web:wallet"

# --- Database -------------------------------------------------------------------------------
# PostgreSQL only: psycopg 3 with Django's connection pool, at most DATABASE_POOL_MAX_SIZE
# connections per process (0 disables the pool). Settings never start a server: with no
# DATABASE_URL, `make run` / `make test` (scripts/embedded_pg.py) start an embedded one and set it.
if not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Run through `make run` or `make test` (they start an embedded "
        "PostgreSQL in .pgdata/ and set it), wrap a command in `scripts/embedded_pg.py COMMAND`, or "
        "set DATABASE_URL=postgres://user:pass@host:5432/creditdesk."
    )
DATABASES = {"default": env.db("DATABASE_URL")}
_db = DATABASES["default"]
if _db["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL; this one is {_db['ENGINE']}.")
if not _db["HOST"] and "host" in _db.get("OPTIONS", {}):
    # postgres://user@/name?host=/socket/dir (the embedded server's URL): HOST is the socket folder.
    _db["HOST"] = _db["OPTIONS"].pop("host")
# Tests run threads that each need a connection of their own: no pool there.
_pool_max = env.int("DATABASE_POOL_MAX_SIZE", default=0 if TESTING else 4)
if _pool_max > 0:
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": _pool_max,
        "timeout": env.int("DATABASE_POOL_TIMEOUT", default=10),
    }
    # A pooled connection is checked (one empty round trip) before each request uses it: after a
    # restart of PgBouncer or PostgreSQL, a dead connection is replaced instead of failing a request.
    # (Django's pool runs psycopg_pool's check_connection when CONN_HEALTH_CHECKS is on.)
    _db["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_POOL_CHECK", default=False)
else:
    _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    _db["CONN_HEALTH_CHECKS"] = True
# The hot statements are prepared on the server once per connection (core/db.py). A pooler that
# cannot keep them across transactions (PgBouncer < 1.21 in transaction mode) needs false: then
# nothing is ever prepared on the server, by core/db.py or by psycopg's own threshold, and no
# server-side cursor outlives a transaction either (the CSV export's chunked read would lose its
# portal on the next fetch: it then reads one query per chunk, by id, reporting/selectors.py).
DATABASE_SERVER_PREPARE = env.bool("DATABASE_SERVER_PREPARE", default=True)
# With DATABASE_SERVER_PREPARE=false the hot statements run as server functions that hold them
# (made on first use; their plans cached by each server backend: core/statement_functions.py). False
# sends them as they are, parsed and planned on every run (for a role that may not create functions).
DATABASE_STATEMENT_FUNCTIONS = env.bool("DATABASE_STATEMENT_FUNCTIONS", default=True)
if not DATABASE_SERVER_PREPARE:
    _db.setdefault("OPTIONS", {})["prepare_threshold"] = None
    _db["DISABLE_SERVER_SIDE_CURSORS"] = True

# A streaming replica for the reads that may lag (core/replica.py, docs/scaling-data.md): unset, every
# read goes to the primary. Past DATABASE_REPLICA_MAX_LAG seconds behind, or unreachable, those reads
# go to the primary too; the replica's state is checked at most every DATABASE_REPLICA_CHECK_SECONDS.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
DATABASE_REPLICA_MAX_LAG = env.float("DATABASE_REPLICA_MAX_LAG", default=30.0)
DATABASE_REPLICA_CHECK_SECONDS = env.float("DATABASE_REPLICA_CHECK_SECONDS", default=5.0)
if DATABASE_REPLICA_URL:
    _replica = env.db("DATABASE_REPLICA_URL")
    if _replica["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must be a postgres:// URL.")
    if not _replica["HOST"] and "host" in _replica.get("OPTIONS", {}):
        _replica["HOST"] = _replica["OPTIONS"].pop("host")
    # A short connect timeout: a replica that is down is noticed fast. (No `options` startup
    # parameter: PgBouncer refuses it, and the router never writes there anyway.)
    _replica_options = _replica.setdefault("OPTIONS", {})
    _replica_options.setdefault("connect_timeout", env.int("DATABASE_REPLICA_CONNECT_TIMEOUT", default=2))
    _replica["CONN_MAX_AGE"] = _db.get("CONN_MAX_AGE", 60)
    _replica["CONN_HEALTH_CHECKS"] = True
    # Tests: the alias reads the test database itself (proves the routing, not the streaming).
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
    if not DATABASE_SERVER_PREPARE:  # a replica behind the same kind of pooler: the same limits
        _replica_options["prepare_threshold"] = None
        _replica["DISABLE_SERVER_SIDE_CURSORS"] = True
DATABASE_ROUTERS = ["core.replica.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

if TESTING:
    # Hashing strength is not under test; PBKDF2 would dominate the suite's run time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")  # where collectstatic writes
# Users' uploaded files go through the default storage: a local folder unless another backend (any
# django-storages class, configured by its own settings) is named.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
STORAGES = {
    "default": {
        "BACKEND": env.str("FILE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage")
    },
    "staticfiles": {
        # The manifest exists only after collectstatic (make serve); tests and DEBUG serve from the apps,
        # and so does a production server started before collectstatic (core.staticfiles).
        "BACKEND": "core.staticfiles.ManifestOrAppFilesStorage"
        if not (DEBUG or TESTING)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
STATIC_COLLECTED = (Path(STATIC_ROOT) / "staticfiles.json").exists()
WHITENOISE_USE_FINDERS = DEBUG or (not TESTING and not STATIC_COLLECTED)

# Request bodies over 1 MB are refused with 413 (core.middleware).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- Security (README "Deployment") ----------------------------------------------------------
# TLS ends at the proxy, which says so in X-Forwarded-Proto; plain HTTP is redirected to HTTPS unless
# SECURE_SSL_REDIRECT=false (e.g. a loopback server behind nothing).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The test client speaks plain HTTP; tests/test_security.py checks the production default.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not (DEBUG or TESTING))
# The health check answers load balancers that probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/?$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading is the domain owner's commitment (hstspreload.org), not the app's: check --deploy's
# reminder about it is silenced until SECURE_HSTS_PRELOAD=true.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# core.security.ContentSecurityPolicyMiddleware: scripts, styles, images and fonts from this origin
# only (the admin and the self-hosted Swagger UI need nothing else); inline styles are allowed because
# the admin and Swagger UI set style attributes, inline scripts are not.
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default=(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
)
# How many proxies in front of the app append to X-Forwarded-For; 0 = use the socket's address.
# The client address feeds the per-IP throttles and the admin lockout, so never trust more hops
# than you run: a client can put anything in the header.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# The cache shared by every process: throttle counters live here. The default is a table in the
# database (created by accounts/migrations/0002); CACHE_URL=redis://host:6379/0 uses Django's RedisCache.
# django-environ's own error named neither the variable nor what it takes ("Invalid cache schema ").
# The message names the scheme only: the URL itself may carry a Redis password.
try:
    CACHES = {
        "default": env.cache_url(
            "CACHE_URL", default="locmemcache://" if TESTING else "dbcache://creditdesk_cache"
        )
    }
except ImproperlyConfigured:
    _scheme = urlsplit(env.str("CACHE_URL", default="")).scheme
    raise ImproperlyConfigured(
        f"CACHE_URL is not a cache URL ({f'its scheme is {_scheme!r}' if _scheme else 'it has no scheme'}): set it to "
        "redis://host:6379/0 (rediss:// over TLS) or dbcache://creditdesk_cache (the default), "
        "or unset it."
    ) from None
if "redis" in CACHES["default"]["BACKEND"].lower():
    # Django's own RedisCache over the `redis` client (requirements.txt), whichever name django-environ
    # gives the scheme; Redis expires keys itself, so no MAX_ENTRIES (its client would refuse the option).
    CACHES["default"]["BACKEND"] = "django.core.cache.backends.redis.RedisCache"
else:
    # Django culls a third of the entries past MAX_ENTRIES (300): a burst of throttle keys for made-up
    # usernames would then reset real counters. Expired entries are culled first.
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 1_000_000)

# Throttle rates (DRF rate strings "<n>/second|minute|hour|day"; empty disables), core.throttling.
THROTTLE_AUTH_RATE = env.str("THROTTLE_AUTH_RATE", default="10/minute") or None
THROTTLE_SIGNUP_RATE = env.str("THROTTLE_SIGNUP_RATE", default="10/hour") or None
THROTTLE_TURN_RATE = env.str("THROTTLE_TURN_RATE", default="60/minute") or None
THROTTLE_STAFF_RATE = env.str("THROTTLE_STAFF_RATE", default="60/minute") or None
# Calls to the OpenAI-compatible gateway (/v1/) per API key.
THROTTLE_GATEWAY_RATE = env.str("THROTTLE_GATEWAY_RATE", default="300/minute") or None
# Purchases started per user (each is a Stripe Checkout Session), on the API and the Buy credits page.
THROTTLE_PURCHASE_RATE = env.str("THROTTLE_PURCHASE_RATE", default="20/hour") or None

# Browser clients on other origins (a chat UI calling /v1/ with a key, a frontend calling /api/v1/):
# django-cors-headers, for those two prefixes only, from the origins listed (default: none).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(api/)?v1/.*$"
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "openai-organization",
    "openai-project",
    "user-agent",
    # What the official OpenAI JavaScript client sends from a browser.
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
CORS_EXPOSE_HEADERS = ("X-Creditdesk-Cost", "X-Creditdesk-Balance", "Retry-After", "Idempotent-Replayed")

# API tokens (django-rest-knox): stored as SHA-512 digests, sent as `Authorization: Token <key>`.
AUTH_TOKEN_TTL_HOURS = env.int("AUTH_TOKEN_TTL_HOURS", default=24 * 7)
AUTH_TOKEN_MAX_PER_USER = env.int("AUTH_TOKEN_MAX_PER_USER", default=10)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_TTL": timedelta(hours=AUTH_TOKEN_TTL_HOURS),
    "AUTO_REFRESH": False,
}

# Login lockout (django-axes), on the admin's login and the user pages' sign-in alike: after
# ADMIN_LOGIN_FAILURE_LIMIT failures for one username from one address, that pair is locked for
# ADMIN_LOCKOUT_MINUTES on both (staff unlock: README "Deployment").
AUTHENTICATION_BACKENDS = [
    "accounts.backends.AdminLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOCKOUT_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_ONLY_ADMIN_SITE = False  # the admin's login and the user pages' sign-in: accounts.lockout says which
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.throttling.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_USERNAME_CALLABLE = "accounts.lockout.attempted_username"
AXES_WHITELIST_CALLABLE = "accounts.lockout.outside_login_forms"
AXES_VERBOSE = False

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.api.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.DefaultPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "creditdesk API",
    "DESCRIPTION": (
        "Prepaid credit wallets for an LLM chat product: metered, billed chat turns, the user's "
        "ledger, and the operators' API. Money is a decimal string with 6 places."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The interactive docs load their assets from this server, never from a CDN (they work offline,
    # and the content security policy allows this origin only).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Operation ids and tags read the path after /api/v1 (the API) or /v1 (the gateway).
    "SCHEMA_PATH_PREFIX": r"^/(api/)?v1",
    # One name for the calendar periods: a report's buckets and a spending cap's period.
    "ENUM_NAME_OVERRIDES": {"PeriodEnum": ["day", "week", "month"]},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.document_pagination_errors",
        "core.throttling.document_throttled_responses",
        "core.api.document_common_responses",
    ],
}

# --- Credits and enforcement ----------------------------------------------------------------
CREDIT_ENFORCEMENT_ENABLED = env.bool("CREDIT_ENFORCEMENT_ENABLED", default=False)
# Shadow mode: while enforcement is off, flag (and log) the turns it would have refused.
CREDIT_ENFORCEMENT_SHADOW = env.bool("CREDIT_ENFORCEMENT_SHADOW", default=True)
# A hold left open by a crashed worker is released after this many seconds (charged with its stream's
# progress, if it recorded any); a streamed call's progress pushes its expiry this far on.
CREDIT_HOLD_TTL_SECONDS = env.int("CREDIT_HOLD_TTL_SECONDS", default=600)
LOW_BALANCE_THRESHOLD = env.decimal("LOW_BALANCE_THRESHOLD", default="1.000000")
STARTING_CREDITS = env.decimal("STARTING_CREDITS", default="0")
# The most one grant (or positive adjustment) may give by staff without the permission
# "billing.grant_beyond_support_limit" (superusers have it); the service's own maximum (10000) stays above it.
SUPPORT_GRANT_LIMIT = env.decimal("SUPPORT_GRANT_LIMIT", default="500")
SIGNUP_ENABLED = env.bool("SIGNUP_ENABLED", default=True)
REPORT_TIME_ZONE = env.str("REPORT_TIME_ZONE", default="UTC")
# Call events are partitioned by UTC month (billing/partitions.py): the daily job keeps this many
# months ahead; a detach waits at most this long for the table's lock, then gives up.
CALL_EVENT_PARTITIONS_AHEAD = env.int("CALL_EVENT_PARTITIONS_AHEAD", default=3)
CALL_EVENT_DETACH_LOCK_TIMEOUT_MS = env.int("CALL_EVENT_DETACH_LOCK_TIMEOUT_MS", default=2000)

# --- Buying credits through Stripe Checkout (docs/purchases.md) -----------------------------
# Empty STRIPE_API_KEY: purchases are off (the endpoint answers 503 payments_disabled).
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
# The webhook endpoint's signing secret (whsec_...): Stripe-Signature is verified with it.
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Where the stripe library sends its calls: Stripe itself, or a double (scripts/stripe_double.py).
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
if STRIPE_API_KEY and not STRIPE_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "STRIPE_API_KEY is set but STRIPE_WEBHOOK_SECRET is empty: paid purchases would never be "
        "credited. Set STRIPE_WEBHOOK_SECRET to the webhook endpoint's signing secret (whsec_...)."
    )
# What one credit costs in CREDIT_CURRENCY (a decimal string), and how many credits one purchase may buy.
CREDIT_UNIT_PRICE = env.decimal("CREDIT_UNIT_PRICE", default="0.01")
CREDIT_CURRENCY = env.str("CREDIT_CURRENCY", default="usd").lower()
PURCHASE_MIN_CREDITS = env.int("PURCHASE_MIN_CREDITS", default=5)
PURCHASE_MAX_CREDITS = env.int("PURCHASE_MAX_CREDITS", default=10000)

# --- LLM provider ---------------------------------------------------------------------------
LLM_PROVIDER = env.str("LLM_PROVIDER", default="echo")
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_DEFAULT_MODEL = env.str("LLM_DEFAULT_MODEL", default="echo-1")
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=30.0)
LLM_MAX_OUTPUT_TOKENS = env.int("LLM_MAX_OUTPUT_TOKENS", default=1024)
# Model calls that answer tool results, at most, in one turn (after its first call).
LLM_MAX_TOOL_STEPS = env.int("LLM_MAX_TOOL_STEPS", default=4)
# Past this many tokens of history, the older part is summarized by a model call.
LLM_CONTEXT_TOKENS = env.int("LLM_CONTEXT_TOKENS", default=8000)

# --- Users' files ---------------------------------------------------------------------------
FILE_MAX_BYTES = env.int("FILE_MAX_BYTES", default=2 * 1024 * 1024)
FILE_QUOTA_BYTES = env.int("FILE_QUOTA_BYTES", default=50 * 1024 * 1024)

# The echo provider's pause between streamed pieces (0: as fast as it can; demos and load tests slow it).
LLM_ECHO_STREAM_DELAY_SECONDS = env.float("LLM_ECHO_STREAM_DELAY_SECONDS", default=0.0)
# A streamed call records what it has produced on its hold at most this often (docs/streaming.md): a
# worker that dies is charged at its hold's expiry with output at most this far behind.
STREAM_PROGRESS_INTERVAL_SECONDS = env.float("STREAM_PROGRESS_INTERVAL_SECONDS", default=1.0)

# --- Background work and notifications (docs/notifications.md) -------------------------------
# Crossing events are POSTed here, signed with WEBHOOK_SECRET; empty: no webhook (email only).
WEBHOOK_URL = env.str("WEBHOOK_URL", default="")
WEBHOOK_SECRET = env.str("WEBHOOK_SECRET", default="")
# While receivers change over to a new WEBHOOK_SECRET: the old one, whose signature is sent as well.
WEBHOOK_SECRET_PREVIOUS = env.str("WEBHOOK_SECRET_PREVIOUS", default="")
if WEBHOOK_URL and not WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "WEBHOOK_URL is set but WEBHOOK_SECRET is empty: set WEBHOOK_SECRET so receivers can verify deliveries."
    )
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Tries per delivery job (with exponential backoff between them) before the delivery is marked dead.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
# Seconds of the first backoff; the n-th retry waits WEBHOOK_RETRY_BASE_SECONDS ** n.
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=4)
# Workers (manage.py procrastinate worker) connect here when set, else by DATABASE_URL: LISTEN/NOTIFY
# and long-lived connections do not pass through PgBouncer in transaction mode.
WORKER_DATABASE_URL = env.str("WORKER_DATABASE_URL", default="")
# A worker silent for this long is presumed dead and its running jobs are retried by another worker.
WORKER_STALLED_SECONDS = env.int("WORKER_STALLED_SECONDS", default=30)
PROCRASTINATE_ON_APP_READY = "core.queue.on_app_ready"
# Jobs a worker runs at once (`--concurrency` overrides it): a delivery to a slow receiver holds its
# slot up to WEBHOOK_TIMEOUT_SECONDS, and with one slot every chore (hold release, lot expiry,
# allowances, stalled-job recovery) waited behind it.
WORKER_CONCURRENCY = env.int("WORKER_CONCURRENCY", default=4)
PROCRASTINATE_WORKER_DEFAULTS = {
    "concurrency": WORKER_CONCURRENCY,
    "update_heartbeat_interval": max(WORKER_STALLED_SECONDS / 3, 0.5),
    "stalled_worker_timeout": WORKER_STALLED_SECONDS,
}
# Email: SMTP (EMAIL_URL, e.g. smtp+tls://user:pass@smtp.example.com:587). In DEBUG without EMAIL_URL,
# each message is one log line and its full text a file in EMAIL_FILE_PATH (gitignored), not a
# screenful of headers in `make run`'s terminal.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="smtp://localhost:25")
globals().update(EMAIL_CONFIG)  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, ... as the URL says
if DEBUG and not env.str("EMAIL_URL", default=""):
    EMAIL_BACKEND = "core.mail.SummaryEmailBackend"
EMAIL_FILE_PATH = env.path("EMAIL_FILE_PATH", default=BASE_DIR / "tmp" / "mail")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="creditdesk <noreply@localhost>")
# Each SMTP operation's timeout. Django's default is none at all: a server that accepts and never
# greets held a worker slot (and the event's lock) for good, and four of them every chore.
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=WEBHOOK_TIMEOUT_SECONDS)

# WhiteNoise serves static files with a synchronous iterator; under ASGI (uvicorn: make run, make serve)
# Django warns about it on stderr. Known and harmless for files this small.
warnings.filterwarnings(
    "ignore",
    message="StreamingHttpResponse must consume synchronous iterators",
    module="django.core.handlers.asgi",
)

# --- Logging: one line per record on stdout: JSON in production, readable text in DEBUG ---------
# Any case; logging itself refused a name it does not know only inside dictConfig, with a 30-line
# traceback that never said which variable ("Unable to configure root logger").
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").strip().upper()
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
if LOG_LEVEL not in _LOG_LEVELS:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {env.str('LOG_LEVEL')!r}: set it to one, "
        "or unset it for INFO."
    )
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "core.logging.JSONFormatter"},
        "text": {"()": "core.logging.ConsoleFormatter"},
    },
    # Periodic chores that found nothing to do log nothing below DEBUG (core.logging.QuietPeriodicJobs).
    "filters": {"quiet_periodic_jobs": {"()": "core.logging.QuietPeriodicJobs"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["quiet_periodic_jobs"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own DEBUG-only console handler would print each of its records a second time.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # runserver's request lines, in this format like everything else.
        "django.server": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
        # procrastinate lists its tasks at each start of every process: keep only their warnings.
        "procrastinate.periodic": {"level": "WARNING"},
        "procrastinate.blueprints": {"level": "WARNING"},
    },
}
