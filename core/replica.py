"""Reads that may lag a few seconds, sent to the streaming replica when one is configured and healthy.

Routing is opt-in, never by model: a reader that can show slightly old rows (the staff usage summary,
the CSV export, the admin's history lists) asks for it, and everything else (reservations, balances
before a charge, authentication, idempotency lookups, a user's own wallet) stays on the primary.

    with using_replica():                       # raw SQL: read_connection() inside
        rows = usage_totals(...)
    queryset.using(replica_or_primary())        # a queryset evaluated later (a streamed CSV)

Either way the replica is used only when DATABASE_REPLICA_URL is set, no transaction is open on the
primary (a read inside one may feed a write), and the replica's last check (cached for
DATABASE_REPLICA_CHECK_SECONDS, one round trip per process per period) found it up and at most
DATABASE_REPLICA_MAX_LAG seconds behind. Otherwise the read goes to the primary; each change of the
replica's state is logged once. docs/scaling-data.md.
"""

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

logger = logging.getLogger(__name__)

REPLICA = "replica"

_opted_in = contextvars.ContextVar("replica_reads", default=False)

# How far behind the replica is, in seconds: 0 when it replays everything it received while still
# streaming, else the age of the last transaction it replayed (a replica cut off from the primary
# stops receiving, so "nothing left to replay" alone would read as caught up). Not in recovery
# (a promoted or plain server, the tests' mirror): 0.
_LAG_SQL = """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN 0
        WHEN coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false)
             AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
    END
"""


@dataclass(frozen=True)
class ReplicaState:
    state: str  # "ok", "lagging" or "down"
    lag_seconds: float | None  # None when down or unknown
    checked_at: float  # time.monotonic()

    @property
    def usable(self) -> bool:
        return self.state == "ok"


_lock = threading.Lock()
_last: ReplicaState | None = None
_checking = False


def configured() -> bool:
    """A replica alias exists and DATABASE_REPLICA_URL names it."""
    return bool(settings.DATABASE_REPLICA_URL) and REPLICA in connections.settings


def _lag_seconds() -> float | None:
    with connections[REPLICA].cursor() as cursor:
        cursor.execute(_LAG_SQL)
        lag = cursor.fetchone()[0]
    return None if lag is None else max(float(lag), 0.0)


def _check() -> ReplicaState:
    try:
        lag = _lag_seconds()
    except DatabaseError as exc:
        connections[REPLICA].close()  # reconnect on the next check
        logger.debug("replica check failed", extra={"error": type(exc).__name__})
        return ReplicaState("down", None, time.monotonic())
    state = "ok" if lag is not None and lag <= settings.DATABASE_REPLICA_MAX_LAG else "lagging"
    return ReplicaState(state, lag, time.monotonic())


def _record(state: ReplicaState) -> None:
    global _last
    with _lock:
        previous, _last = _last, state
    if previous is None or previous.state != state.state:
        extra = {
            "replica_state": state.state,
            "previous_state": previous.state if previous else None,
            "lag_seconds": state.lag_seconds,
            "max_lag_seconds": settings.DATABASE_REPLICA_MAX_LAG,
        }
        if state.usable:
            logger.info("replica usable: lag-tolerant reads go to the replica", extra=extra)
        else:
            logger.warning(f"replica {state.state}: lag-tolerant reads go to the primary", extra=extra)


def replica_state(*, fresh: bool = False) -> ReplicaState | None:
    """The replica's last known state, checked again when older than DATABASE_REPLICA_CHECK_SECONDS; None if unset.

    One thread per process checks at a time; the others keep the previous answer meanwhile, so a
    replica that stopped answering costs one connect timeout per period, not one per request.
    """
    global _checking
    if not configured():
        return None
    with _lock:
        cached = _last
        stale = (
            cached is None or time.monotonic() - cached.checked_at >= settings.DATABASE_REPLICA_CHECK_SECONDS
        )
        if not (fresh or stale) or (_checking and cached is not None):
            return cached
        _checking = True
    try:
        state = _check()
        _record(state)
        return state
    finally:
        with _lock:
            _checking = False


def mark_replica_down() -> None:
    """A read on the replica just failed: the next reads go to the primary until a check finds it again."""
    _record(ReplicaState("down", None, time.monotonic()))


def reset_replica_state() -> None:
    """Forget the cached state (tests, and a process that changed DATABASE_REPLICA_URL)."""
    global _last
    with _lock:
        _last = None


def replica_or_primary() -> str:
    """The alias a lag-tolerant read uses now: the replica when configured, healthy and no transaction is open."""
    if not configured() or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    state = replica_state()
    return REPLICA if state is not None and state.usable else DEFAULT_DB_ALIAS


def read_alias() -> str:
    """The alias for a read here: replica_or_primary() inside using_replica(), else the primary."""
    return replica_or_primary() if _opted_in.get() else DEFAULT_DB_ALIAS


def read_connection():
    """The connection for raw SQL of a read that using_replica() may send to the replica."""
    return connections[read_alias()]


@contextmanager
def using_replica():
    """Within the block, reads through read_connection() and the ORM may go to the replica (when healthy)."""
    token = _opted_in.set(True)
    try:
        yield
    finally:
        _opted_in.reset(token)


def reads_replica(view: Callable) -> Callable:
    """A read-only view (or function) run under using_replica(); rerun on the primary if the replica fails it.

    Only for code that writes nothing: a rerun repeats it whole. A database error on the primary
    is not retried (it propagates as before).
    """

    @wraps(view)
    def wrapper(*args, **kwargs):
        with using_replica():
            alias = read_alias()
            if alias == DEFAULT_DB_ALIAS:
                return view(*args, **kwargs)
            try:
                return view(*args, **kwargs)
            except DatabaseError:
                if connections[REPLICA].is_usable():
                    raise  # the query itself was wrong, not the replica
                connections[REPLICA].close()
                mark_replica_down()
        return view(*args, **kwargs)

    return wrapper


class ReplicaRouter:
    """Sends ORM reads to the replica inside using_replica() (when healthy); every write to the primary."""

    def db_for_read(self, model, **hints):
        alias = read_alias()
        return alias if alias == REPLICA else None

    def db_for_write(self, model, **hints):
        # Never None: Django would then write where the instance was read from (maybe the replica).
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the same rows, whichever copy they were read from

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db != REPLICA
