"""Admin pagination for big tables: exact counts while they are cheap, the planner's estimate beyond."""

import json

from django.core.paginator import Paginator
from django.utils.functional import cached_property

# Counting up to this many rows costs a few milliseconds; a full COUNT(*) of a million-row ledger
# costs a scan of the table on every page view.
EXACT_COUNT_LIMIT = 10_000


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to EXACT_COUNT_LIMIT rows; beyond it uses PostgreSQL's EXPLAIN row estimate.

    Page links past the estimate's end may be missing or empty, which the admin can live with;
    a changelist that never opens is not. Pair with `show_full_result_count = False`.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        rows = queryset.order_by().values("pk")
        capped = rows[: EXACT_COUNT_LIMIT + 1].count()
        if capped <= EXACT_COUNT_LIMIT:
            return capped
        plan = json.loads(rows.explain(format="json"))
        return max(capped, int(plan[0]["Plan"]["Plan Rows"]))
