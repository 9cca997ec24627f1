"""Rate limits as one round trip: a key's count moved and judged in one statement (or one Redis call).

The algorithm is GCRA (the generic cell rate algorithm): each key keeps one timestamp, its
theoretical arrival time `tat`. A hit moves it one interval (period / limit) on from max(tat, now);
the hit is refused when that would put it more than one period ahead of now. From rest a key takes
`limit` hits at once, then one per interval, and a refused hit waits until the next one fits. A `tat`
further ahead than one period (counted under a slower rate than the one set now) is read as one
period ahead: raising a rate lifts a wait that the old rate set at once, after one new interval.

Where the counts live follows the cache (settings CACHES): with Redis, a Lua script in Redis; with
anything else, core's UNLOGGED table `core_ratelimit`, shared by every process and instance. A
statement that already runs per request can count a hit too (RATE_CTES, RATE_VERDICT): the turn's
session read does, so a turn's throttle costs no statement of its own.
"""

from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.utils import timezone

from core.db import RELAXED_COMMIT, execute_prepared, relaxed_commit_params
from core.models import RateLimit

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    """`limit` hits per `period`."""

    limit: int
    period: timedelta

    @property
    def interval(self) -> timedelta:
        return self.period / self.limit


@cache  # every throttled request parses its setting's rate: the same few strings, parsed once each
def parse_rate(text: str | None) -> Rate | None:
    """A DRF rate string (`"60/minute"`: `<n>/<second|minute|hour|day>`, by its first letter); empty: None.

    Anything else raises ValueError saying what a rate looks like (core.checks reports it at start-up).
    """
    if not text:
        return None
    number, _, unit = text.partition("/")
    try:
        limit = int(number)
    except ValueError:
        limit = 0
    if limit < 1 or unit[:1] not in _UNITS:
        raise ValueError(
            f"{text!r} is not a rate: write <n>/<second|minute|hour|day> with n at least 1 "
            "(e.g. 60/minute), or leave it empty for no limit."
        )
    return Rate(limit=limit, period=timedelta(seconds=_UNITS[unit[0]]))


@dataclass(frozen=True)
class Hit:
    """One request counted against `key` at `rate`."""

    key: str
    rate: Rate


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    wait: float = 0.0  # seconds until a hit would fit again (when refused)


ALLOWED = Verdict(allowed=True)

_TABLE = RateLimit._meta.db_table

# The two steps a statement adds to count a hit: a CTE pair to put first in its WITH clause, and the
# verdict's two columns (allowed, seconds to wait) for its SELECT list. With `rate_key` null they do
# nothing and allow. Parameters: rate_key, rate_interval, rate_period (hit_params()).
RATE_CTES = f"""
    -- The key as this statement found it (a statement reads the rows as they were before its writes).
    rate_before AS (
        SELECT tat FROM {_TABLE} WHERE key = %(rate_key)s::text
    ),
    -- GCRA: the key's arrival time moves one interval on, only while that keeps it within one period
    -- of now; a row back means allowed. Concurrent hits queue on the key's row and each re-checks
    -- the latest version (ON CONFLICT) against the database's clock read after it got the row, so
    -- every process and instance counts against one row, in the order they got it.
    rate_hit AS (
        INSERT INTO {_TABLE} AS existing (key, tat)
        SELECT %(rate_key)s::text, clock_timestamp() + %(rate_interval)s::interval
         WHERE %(rate_key)s::text IS NOT NULL
        ON CONFLICT (key) DO UPDATE
           SET tat = greatest(least(existing.tat, clock_timestamp() + %(rate_period)s::interval),
                              clock_timestamp()) + %(rate_interval)s::interval
         WHERE greatest(least(existing.tat, clock_timestamp() + %(rate_period)s::interval),
                        clock_timestamp()) + %(rate_interval)s::interval
               <= clock_timestamp() + %(rate_period)s::interval
        RETURNING tat
    )"""  # noqa: S608 - core's own table
RATE_VERDICT = """
    -- allowed: nothing to count, or the key moved
    %(rate_key)s::text IS NULL OR EXISTS (SELECT 1 FROM rate_hit),
    -- refused: seconds until the next hit fits (from the key as it was, at most one period ahead)
    extract(epoch FROM least((SELECT tat FROM rate_before), clock_timestamp() + %(rate_period)s::interval)
                       + %(rate_interval)s::interval - %(rate_period)s::interval - clock_timestamp())"""

# A hit on its own: its commit relaxed (the count is in an UNLOGGED table; core.db's RELAXED_COMMIT).
_HIT_SQL = f"""
WITH {RATE_CTES}
SELECT {RATE_VERDICT}, {RELAXED_COMMIT}
"""


def hit_params(hit: Hit | None) -> dict:
    """RATE_CTES' parameters for `hit` (None: count nothing)."""
    rate = hit.rate if hit is not None else Rate(limit=1, period=timedelta(0))
    return {
        "rate_key": hit.key if hit is not None else None,
        "rate_interval": rate.interval,
        "rate_period": rate.period,
    }


def verdict(allowed: bool, wait) -> Verdict:
    """The verdict from RATE_VERDICT's two columns."""
    return ALLOWED if allowed else Verdict(allowed=False, wait=float(wait or 0))


class DatabaseStore:
    """Counts in core_ratelimit: one statement a hit."""

    counts_in_statements = True  # a caller's own statement may count the hit instead (RATE_CTES)

    def hit(self, hit: Hit) -> Verdict:
        ((allowed, wait, _),) = execute_prepared(_HIT_SQL, {**hit_params(hit), **relaxed_commit_params()})
        return verdict(allowed, wait)


# The same rule in Redis, atomically, on Redis's clock: the key holds its tat (seconds, as a string)
# and expires when it says nothing any more. ARGV: interval, period (seconds).
_GCRA_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.min(tonumber(redis.call('GET', KEYS[1]) or '0'), now + period)
local moved = math.max(tat, now) + interval
if moved - now <= period then
    redis.call('SET', KEYS[1], string.format('%.6f', moved), 'PX', math.ceil((moved - now) * 1000))
    return {1, '0'}
end
return {0, string.format('%.6f', tat + interval - period - now)}
"""


class RedisStore:
    """Counts in Redis (CACHE_URL=redis://...): one call a hit, no database statement."""

    counts_in_statements = False

    def __init__(self, location: str, key_prefix: str):
        import redis  # only where Redis is configured

        self.client = redis.Redis.from_url(location)
        self.script = self.client.register_script(_GCRA_LUA)
        self.key_prefix = key_prefix

    def hit(self, hit: Hit) -> Verdict:
        allowed, wait = self.script(
            keys=[f"{self.key_prefix}:ratelimit:{hit.key}"],
            args=[hit.rate.interval.total_seconds(), hit.rate.period.total_seconds()],
        )
        return verdict(bool(allowed), wait.decode() if isinstance(wait, bytes) else wait)


@cache
def _redis_store(location: str, key_prefix: str) -> RedisStore:
    return RedisStore(location, key_prefix)


_DATABASE = DatabaseStore()


def rate_store() -> DatabaseStore | RedisStore:
    """Where counts live: Redis when the default cache is Redis, else the database (read per call,
    so a test's override_settings applies)."""
    cache_settings = settings.CACHES["default"]
    if "redis" in cache_settings["BACKEND"].lower():
        location = cache_settings["LOCATION"]
        first = location[0] if isinstance(location, list | tuple) else location.split(",")[0]
        return _redis_store(first, cache_settings.get("KEY_PREFIX", ""))
    return _DATABASE


def prune() -> int:
    """Delete the keys whose arrival time has passed (they allow a full burst again either way)."""
    return RateLimit.objects.filter(tat__lt=timezone.now()).delete()[0]
