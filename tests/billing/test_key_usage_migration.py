"""billing 0027 on a database with gateway calls: their per-key rows filled, equal to a recount."""

from decimal import Decimal

import pytest

from accounts.keys import create_api_key
from billing.models import LLMCallEvent, UsageKeyDaily
from billing.rollup import built_for_time_zone, rebuild_usage_rollup
from tests.database import leaf_migrations, migrate
from tests.factories import LLMCallEventFactory


def key_rows() -> list[tuple]:
    return list(
        UsageKeyDaily.objects.order_by("spend_limit_id", "day", "model").values_list(
            "spend_limit_id", "day", "model", "calls", "failed_calls", "cost", "api_cost"
        )
    )


@pytest.mark.django_db(transaction=True)
def test_existing_gateway_calls_get_their_per_key_rows(user, settings):
    settings.REPORT_TIME_ZONE = "America/New_York"
    key, _ = create_api_key(user=user, name="laptop")
    for status, cost in (("ok", "1.5"), ("ok", "2"), ("error", "0")):
        LLMCallEventFactory(
            user=user, purpose="api", spend_limit_id=key.spend_limit_id, status=status, cost=Decimal(cost)
        )
    LLMCallEventFactory(user=user)  # a turn's call: no key
    rebuild_usage_rollup()
    expected = key_rows()
    assert [(row[3], row[4], row[5]) for row in expected] == [(2, 1, Decimal("3.5"))]
    leaves = leaf_migrations()
    migrate([("billing", "0026_charge_commits_alone_function")])
    try:
        assert built_for_time_zone() == "America/New_York"
    finally:
        migrate(leaves)  # a build is recorded: only the per-key rows are filled, in its zone

    assert key_rows() == expected
    assert LLMCallEvent.objects.count() == 4
