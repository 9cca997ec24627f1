"""Faults under load: a misbehaving model provider, a gunicorn worker SIGKILLed, a charge's connection terminated.

By hand (the full size, on a scratch database that is dropped and created):
    .venv/bin/python bench/faults.py --full
CI runs a reduced size from tests/reliability/test_faults.py against the test database.

Each scenario runs gunicorn with LLM_PROVIDER=openai pointed at bench/fake_openai.py on loopback, a
1-second LLM_TIMEOUT_SECONDS and a short CREDIT_HOLD_TTL_SECONDS, then checks: no partial ledger row,
no hold open past its expiry once release_expired_holds has run (and held == sum of open holds via
check_ledger), no debit without its event, and that the service answers again.
"""

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/faults.py`
    sys.path.insert(0, str(ROOT))

from bench._db import maintenance_dsn  # noqa: E402 - after the path fix above
from bench.fake_openai import FakeOpenAIServer  # noqa: E402
from bench.load import (  # noqa: E402
    Driver,
    InvariantBroken,
    World,
    check_all,
    check_debits_have_events,
    check_grants,
    check_ledger_clean,
    check_turns,
    prepare,
    report,
    request,
    seed_world,
    start_server,
)

LLM_TIMEOUT_SECONDS = 1.0
HOLD_TTL_SECONDS = 4
PROVIDER_FAULTS = ["", "", "", "[fault:error]", "[fault:garbage]", "[fault:timeout]", "[fault:hang]"]
# What each provider fault must answer; anything else (a 500 above all) is a defect.
TURN_STATUSES = {201, 502, 504}
TURN_OPERATIONS = ("turn", "turn_hot")

CI_SIZE = {
    "requests": 500,
    "concurrency": 12,
    "workers": 3,
    "users": 20,
    "hot": 3,
    "kills": 1,
    "terminations": 2,
}
FULL_SIZE = {
    "requests": 5000,
    "concurrency": 48,
    "workers": 5,
    "users": 200,
    "hot": 5,
    "kills": 3,
    "terminations": 5,
}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantBroken(message)


def fault_env(fake: FakeOpenAIServer) -> dict:
    return {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": fake.base_url,
        "LLM_API_KEY": "fake",
        "LLM_TIMEOUT_SECONDS": str(LLM_TIMEOUT_SECONDS),
        "CREDIT_HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),
    }


@dataclass
class Outcome:
    title: str
    lines: list[str] = field(default_factory=list)
    invariants: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(
            [f"== {self.title}", *self.lines, "invariants held:", *(f"  - {i}" for i in self.invariants)]
        )


def expire_and_check_holds() -> str:
    """Wait (bounded) for every open hold to pass its expiry, release them, and check none is left past it."""
    from django.utils import timezone

    from billing.models import CreditHold
    from billing.services import release_expired_holds

    deadline = time.monotonic() + HOLD_TTL_SECONDS + 10
    latest = CreditHold.objects.filter(status=CreditHold.Status.HELD).order_by("-expires_at").first()
    while latest is not None and latest.expires_at > timezone.now() and time.monotonic() < deadline:
        time.sleep(0.2)
    released = release_expired_holds()
    now = timezone.now()
    stale = CreditHold.objects.filter(status=CreditHold.Status.HELD, expires_at__lte=now).count()
    _require(stale == 0, f"{stale} holds still open past their expiry after release_expired_holds")
    still_open = CreditHold.objects.filter(status=CreditHold.Status.HELD).count()
    _require(still_open == 0, f"{still_open} holds open with no request in flight")
    return f"release_expired_holds closed {released} abandoned holds; nothing open past its expiry"


def answers_again(server, world: World, *, rounds: int) -> str:
    """`rounds` health checks, wallet reads and turns in a row, each of which must succeed."""
    account = world.accounts[-1]
    for _ in range(rounds):
        status = request(server.base_url, "GET", "/api/v1/health")[0]
        _require(status == 200, f"health answered {status} after the fault")
        status = request(server.base_url, "GET", "/api/v1/users/me/wallet", token=account.token)[0]
        _require(status == 200, f"wallet answered {status} after the fault")
        status = request(
            server.base_url,
            "POST",
            f"/api/v1/sessions/{account.sessions[0]}/turns/",
            token=account.token,
            body={"content": "are you back?"},
        )[0]
        _require(status == 201, f"a turn answered {status} after the fault")
    return f"the service answered again: {rounds} x (health 200, wallet 200, turn 201)"


# --- 1. the provider misbehaves ------------------------------------------------------------------


def provider_faults(database_url: str, world: World, size: dict) -> Outcome:
    fake = FakeOpenAIServer(stall_seconds=LLM_TIMEOUT_SECONDS + 1.5).start()
    server = start_server(database_url=database_url, workers=size["workers"], env=fault_env(fake))
    try:
        result = Driver(server.base_url, world, seed=61, fault_markers=PROVIDER_FAULTS).run(
            total=size["requests"], concurrency=size["concurrency"], max_seconds=600
        )
        turn_statuses = {s for (op, s) in result.statuses if op in TURN_OPERATIONS}
        _require(
            turn_statuses <= TURN_STATUSES, f"turn statuses {sorted(turn_statuses)}; expected 201/502/504"
        )
        _require(
            not any(s >= 500 for (op, s) in result.statuses if op not in TURN_OPERATIONS),
            f"server errors outside turns: {result.errors()}",
        )
        _require(not result.connection_errors, f"connection errors: {dict(result.connection_errors)}")
        outcome = Outcome("faults: the model provider times out, fails, answers garbage, hangs mid-body")
        outcome.lines = [
            f"provider faults injected: {dict(sorted(fake.counts.items()))}",
            report("provider faults under load", result, size["concurrency"], [])
            .split("\n", 1)[1]
            .rsplit("\ninvariants held:", 1)[0],
        ]
        outcome.invariants = [
            *check_all(result, server.base_url, world.staff_token),
            answers_again(server, world, rounds=3),
        ]
        return outcome
    finally:
        server.stop()
        fake.stop()


# --- 2. a gunicorn worker is SIGKILLed in the middle of the load ----------------------------------


def _socket_inodes(port: int) -> set[str]:
    """Inodes of the loopback TCP sockets whose local port is `port` (from /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def _owner_of(port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the socket with local port `port` (the worker calling the provider)."""
    targets = {f"socket:[{inode}]" for inode in _socket_inodes(port)}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) in targets:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _worker_mid_turn(server, fake: FakeOpenAIServer, deadline: float) -> int | None:
    """A worker that is waiting on the provider: its turn has reserved a hold and not settled it."""
    while time.monotonic() < deadline:
        for port in list(fake.in_flight):
            pid = _owner_of(port, server.worker_pids())
            if pid is not None:
                return pid
        time.sleep(0.01)
    return None


def worker_kills(database_url: str, world: World, size: dict) -> Outcome:
    """SIGKILL a worker known to be mid-turn (between reserve and settle); the master respawns it."""
    from billing.models import CreditHold

    fake = FakeOpenAIServer(stall_seconds=LLM_TIMEOUT_SECONDS + 1.5).start()
    server = start_server(database_url=database_url, workers=size["workers"], env=fault_env(fake))
    killed = []
    try:
        # Slow answers keep turns in flight between reserve and settle, where a kill hurts most.
        driver = Driver(
            server.base_url, world, seed=62, fault_markers=["", "[fault:slow=0.3]", "[fault:slow=0.6]"]
        )
        runner = threading.Thread(
            target=driver.run,
            kwargs={"total": size["requests"], "concurrency": size["concurrency"], "max_seconds": 600},
        )
        runner.start()
        for n in range(size["kills"]):
            # Kill when the load is well under way: after (n + 1) / (kills + 1) of the requests.
            goal = size["requests"] * (n + 1) // (size["kills"] + 1)
            deadline = time.monotonic() + 300
            while driver.result.requests < goal and runner.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            victim = _worker_mid_turn(server, fake, time.monotonic() + 30)
            _require(victim is not None, "no gunicorn worker was found in the middle of a turn")
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        runner.join(timeout=700)
        result = driver.result
        # The master respawns the killed workers (bounded wait).
        deadline = time.monotonic() + 30
        while len(set(server.worker_pids()) - set(killed)) < size["workers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        respawned = len(set(server.worker_pids()) - set(killed))
        _require(respawned == size["workers"], f"{respawned} of {size['workers']} workers after the kills")
        _require(
            not any(s >= 500 for (_, s) in result.statuses),
            f"server errors: {result.errors()} (a killed worker should cost connections, not 5xx)",
        )
        outcome = Outcome("faults: a gunicorn worker SIGKILLed mid-load")
        outcome.lines = [
            f"workers killed (SIGKILL): {len(killed)}; respawned by the master: yes ({respawned} running)",
            f"requests sent: {result.requests}, concurrency {size['concurrency']}; answers "
            + ", ".join(f"{s}: {n}" for s, n in sorted(result.by_status().items()))
            + f"; connections dropped: {sum(result.connection_errors.values())}",
        ]
        # A later turn on the same wallet may already have expired an abandoned hold (reserve does that).
        abandoned = CreditHold.objects.filter(
            status__in=[CreditHold.Status.HELD, CreditHold.Status.EXPIRED]
        ).count()
        _require(
            abandoned >= len(killed), f"{abandoned} abandoned holds for {len(killed)} workers killed mid-turn"
        )
        outcome.invariants = [
            f"each worker killed mid-turn abandoned its hold ({abandoned} held or expired, none half-settled)",
            expire_and_check_holds(),
            check_ledger_clean(),
            check_debits_have_events(),
            check_turns(result),
            check_grants(result),
            answers_again(server, world, rounds=size["workers"] * 2),
        ]
        return outcome
    finally:
        server.stop()
        fake.stop()


# --- 3. the database connection of a request is terminated during its charge -------------------


def _blocked_charge_pid(conn, database: str, locker_pid: int, deadline: float) -> int | None:
    """The backend waiting on our wallet row lock: the turn's settle, its transaction open.

    Only the one turn is in flight and its reserve has committed, so the waiter is the charge,
    whatever SQL the charge is spelled in (it moves the wallet row, so it must wait for us).
    """
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s AND wait_event_type = 'Lock' "
            "AND state = 'active'",
            [database, locker_pid],
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.02)
    return None


def terminate_during_charge(database_url: str, world: World, size: dict) -> Outcome:
    """A turn's settle blocks on a wallet row lock we hold; we terminate its backend there; nothing half-written.

    One gunicorn worker, so the requests that follow go to the very process whose connection died.
    """
    import psycopg
    from django.db.models import Sum

    from billing.models import CreditHold, CreditTransaction, LLMCallEvent
    from sessions_app.models import ChatSession, Turn

    fake = FakeOpenAIServer(stall_seconds=LLM_TIMEOUT_SECONDS + 1.5).start()
    server = start_server(database_url=database_url, workers=1, env=fault_env(fake))
    database = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    statuses = []
    try:
        for n in range(size["terminations"]):
            account = world.accounts[n % (len(world.accounts) - 1)]
            session = account.sessions[0]
            before = {
                "events": LLMCallEvent.objects.filter(user_id=account.user_id).count(),
                "rows": CreditTransaction.objects.filter(wallet__user_id=account.user_id).count(),
                "turns": Turn.objects.filter(session_id=session).count(),
                "messages": ChatSession.objects.get(pk=session).message_count,
                "balance": CreditTransaction.objects.filter(wallet__user_id=account.user_id).aggregate(
                    s=Sum("amount")
                )["s"],
            }
            answer = {}

            def turn(account=account, session=session, answer=answer):
                try:
                    answer["status"] = request(
                        server.base_url,
                        "POST",
                        f"/api/v1/sessions/{session}/turns/",
                        token=account.token,
                        body={"content": "charge me [fault:slow=1.0]"},
                    )[0]
                except OSError as exc:
                    answer["status"] = f"connection error {type(exc).__name__}"

            thread = threading.Thread(target=turn)
            with psycopg.connect(database_url, autocommit=False) as locker:
                locker_pid = locker.info.backend_pid
                thread.start()
                # Wait for the reserve to commit its hold, then take the wallet row before the charge does.
                deadline = time.monotonic() + 20
                while (
                    not CreditHold.objects.filter(wallet__user_id=account.user_id, status="held").exists()
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.01)
                _require(time.monotonic() < deadline, "the turn never reserved its hold")
                locker.execute(
                    "SELECT 1 FROM billing_wallet WHERE user_id = %s FOR UPDATE", [account.user_id]
                )
                with psycopg.connect(database_url, autocommit=True) as watcher:
                    pid = _blocked_charge_pid(watcher, database, locker_pid, time.monotonic() + 20)
                    if pid is None:
                        seen = watcher.execute(
                            "SELECT pid, state, wait_event_type, left(query, 80) FROM pg_stat_activity "
                            "WHERE datname = %s",
                            [database],
                        ).fetchall()
                        _require(False, f"the charge never reached the wallet UPDATE; backends: {seen}")
                    watcher.execute("SELECT pg_terminate_backend(%s)", [pid])
                locker.rollback()
            thread.join(timeout=30)
            statuses.append(answer.get("status"))
            # The rolled-back turn says so in JSON (core.api maps a lost connection to 503).
            _require(
                answer.get("status") == 503, f"the interrupted turn answered {answer.get('status')}, not 503"
            )
            # Nothing of the turn survives: no event, no ledger row, no turn, no messages, same balance.
            after_events = LLMCallEvent.objects.filter(user_id=account.user_id).count()
            _require(
                after_events == before["events"], f"{after_events - before['events']} events left behind"
            )
            rows = CreditTransaction.objects.filter(wallet__user_id=account.user_id)
            _require(rows.count() == before["rows"], "a ledger row survived the terminated charge")
            _require(rows.aggregate(s=Sum("amount"))["s"] == before["balance"], "the balance moved")
            _require(Turn.objects.filter(session_id=session).count() == before["turns"], "a turn survived")
            _require(
                ChatSession.objects.get(pk=session).message_count == before["messages"], "messages counted"
            )
            answers_again(server, world, rounds=2)
        outcome = Outcome("faults: pg_terminate_backend on a turn's connection in the middle of its charge")
        outcome.lines = [
            f"connections terminated mid-charge: {len(statuses)}; the interrupted turns answered: {statuses}",
        ]
        outcome.invariants = [
            "no event, ledger row, turn or message of an interrupted charge survived; balances unmoved",
            expire_and_check_holds(),
            check_ledger_clean(),
            check_debits_have_events(),
            answers_again(server, world, rounds=3),
        ]
        return outcome
    finally:
        server.stop()
        fake.stop()


SCENARIOS = [provider_faults, worker_kills, terminate_during_charge]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Inject faults into creditdesk under load and check the ledger."
    )
    parser.add_argument("--full", action="store_true", help=f"the full size: {FULL_SIZE}")
    parser.add_argument(
        "--postgres",
        default=maintenance_dsn(),
    )
    parser.add_argument(
        "--database", default="creditdesk_reliability_faults", help="scratch database (dropped first)"
    )
    args = parser.parse_args(argv)
    size = FULL_SIZE if args.full else CI_SIZE
    url = prepare(args)
    world = seed_world(users=size["users"], hot=size["hot"])
    for scenario in SCENARIOS:
        print(scenario(url, world, size).text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
