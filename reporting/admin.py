"""The daily-usage admin page: usage buckets, totals and a server-drawn cost chart from reporting.selectors."""

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from billing.models import CreditTransaction
from billing.periods import first_day
from core.replica import reads_replica
from reporting.exports import stream_ledger_csv
from reporting.forms import MAX_RANGE_DAYS, UsageFilterForm
from reporting.models import DailyUsage
from reporting.selectors import BUCKETS, UsageRow, usage_summary

logger = logging.getLogger(__name__)

# The chart's drawing box (SVG user units); the SVG scales to the page width.
CHART_WIDTH, CHART_HEIGHT = 960, 260
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 80, 950, 16, 216
MAX_X_LABELS = 12


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    cost: str
    calls: int
    label: str  # "" for bars whose date label is skipped to keep the axis readable


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    gridlines: list[tuple[float, str]]  # (y, label) for 0, half and the maximum
    plot_left: int
    plot_right: int
    plot_bottom: int
    label_y: int


def bucket_count(*, start: date, end: date, bucket: str) -> int:
    """How many buckets bucket_starts() would list, counted without listing them."""
    first, last = first_day(bucket, start), first_day(bucket, end)
    if bucket == "month":
        return max(0, (last.year - first.year) * 12 + last.month - first.month + 1)
    return max(0, (last - first).days // (7 if bucket == "week" else 1) + 1)


def bucket_starts(*, start: date, end: date, bucket: str) -> list[date]:
    """Every bucket's first day from the one holding `start` to the one holding `end` (weeks start Monday)."""
    current, last = first_day(bucket, start), first_day(bucket, end)
    starts = [current] if current <= last else []
    # Step to the last bucket, never past it: after the calendar's last week or month the next
    # start would lie beyond 9999-12-31, which no date can hold.
    while current < last:
        if bucket == "month":
            current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
        else:
            current += timedelta(days=7 if bucket == "week" else 1)
        starts.append(current)
    return starts


TARGET_TICKS = 4


def nice_axis(peak: Decimal) -> tuple[Decimal, Decimal]:
    """The axis top and tick step for values up to `peak`: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if peak <= 0:
        return Decimal(1), Decimal(1)
    raw = peak / TARGET_TICKS
    power = Decimal(10) ** raw.adjusted()  # the power of ten at or below raw
    step = next(
        power * m
        for m in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
        if power * m >= raw
    )
    top = (peak / step).to_integral_value(rounding=ROUND_CEILING) * step  # first multiple at or above peak
    return top, step


def chart_number(value: Decimal, step: Decimal) -> str:
    """A chart label: grouped thousands, and only as many decimals as the tick step needs."""
    places = max(0, -step.normalize().as_tuple().exponent)
    return f"{value:,.{places}f}"


def chart_cost(value: Decimal) -> str:
    """A cost as a chart shows it (the table shows it exact): 2 decimals, more only below 0.01."""
    if value == 0 or abs(value) >= Decimal("0.01"):
        return f"{value:,.2f}"
    return f"{value.normalize():f}"


def cost_chart(*, rows: list[UsageRow], starts: list[date]) -> Chart:
    """Bar geometry for cost per bucket; buckets without events get a zero bar so time reads evenly.

    The y axis runs from 0 to a round value at or above the largest cost, with ticks at round steps.
    """
    cost_by_day = {row.date: row for row in rows}
    peak = max((row.cost for row in rows), default=Decimal(0))
    top, step = nice_axis(peak)
    plot_width, plot_height = PLOT_RIGHT - PLOT_LEFT, PLOT_BOTTOM - PLOT_TOP
    slot = plot_width / max(len(starts), 1)
    label_every = max(1, -(-len(starts) // MAX_X_LABELS))
    bars = []
    for index, day in enumerate(starts):
        row = cost_by_day.get(day)
        cost = row.cost if row else Decimal(0)
        height = float(cost / top) * plot_height
        bars.append(
            Bar(
                x=round(PLOT_LEFT + index * slot + slot * 0.1, 2),
                y=round(PLOT_BOTTOM - height, 2),
                width=round(slot * 0.8, 2),
                height=round(height, 2),
                day=day,
                cost=chart_cost(cost),
                calls=row.calls if row else 0,
                label=day.isoformat() if index % label_every == 0 else "",
            )
        )
    ticks = int(top / step)
    gridlines = [
        (round(PLOT_BOTTOM - float(step * i / top) * plot_height, 2), chart_number(step * i, step))
        for i in range(ticks + 1)
    ]
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        bars=bars,
        gridlines=gridlines,
        plot_left=PLOT_LEFT,
        plot_right=PLOT_RIGHT,
        plot_bottom=PLOT_BOTTOM,
        label_y=PLOT_BOTTOM + 18,
    )


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    """One page, no objects: the usage report for a date range, by day, week or month."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        # Only the changelist: the proxy's rows are events, which have their own admin.
        view = self.admin_site.admin_view(self.changelist_view)
        return [path("", view, name="reporting_dailyusage_changelist")]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsageFilterForm(request.GET)
        context = {
            **self.admin_site.each_context(request),
            "title": "Daily usage",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        if form.is_valid():
            # History that may lag a few seconds: the replica's, when one is healthy.
            summary = reads_replica(usage_summary)(**form.summary_arguments())
            buckets = bucket_count(start=summary.start, end=summary.end, bucket=summary.bucket)
            # One bar per bucket: past a readable number (centuries by week, say) the table alone,
            # not megabytes of bars that take minutes to draw.
            chart = None
            if buckets <= MAX_RANGE_DAYS:
                starts = bucket_starts(start=summary.start, end=summary.end, bucket=summary.bucket)
                chart = cost_chart(rows=summary.rows, starts=starts)
            # Show the dates actually used (defaults included) in the date inputs.
            form.data = form.data.copy()
            form.data["start"], form.data["end"] = summary.start.isoformat(), summary.end.isoformat()
            form.data["bucket"] = summary.bucket
            context.update(
                summary=summary,
                chart=chart,
                buckets=buckets,
                bucket_links=self._bucket_links(request, current=summary.bucket),
            )
        else:
            messages.error(request, "The report could not be shown: " + _errors_in_words(form))
        return TemplateResponse(request, "admin/reporting/dailyusage/change_list.html", context)

    def _bucket_links(self, request, *, current: str) -> list[tuple[str, str, bool]]:
        """(label, query string, selected) for the day/week/month switch, keeping the other filters."""
        links = []
        for bucket in BUCKETS:
            params = request.GET.copy()
            params["bucket"] = bucket
            links.append((bucket.capitalize(), "?" + urlencode(sorted(params.items())), bucket == current))
        return links


def _errors_in_words(form) -> str:
    return " ".join(str(message) for messages_ in form.errors.values() for message in messages_)


# "view", not the default change/delete: the ledger is view-only for everyone, and whoever may read
# it may export what they read.
@admin.action(description="Export selected to CSV", permissions=["view"])
def export_ledger_csv(modeladmin, request, queryset):
    # Who took a copy of the ledger, and which part: the same audit line as the API's export.
    logger.info(
        "ledger export",
        extra={
            "staff_user_id": request.user.pk,
            "source": "admin",
            "select_across": request.POST.get("select_across") == "1",
            "selected_ids": len(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)),
        },
    )
    return stream_ledger_csv(queryset)


# Billing registers the ledger admin but never imports reporting, so the export joins it from here
# (billing comes before reporting in INSTALLED_APPS, so its admin is registered by now).
_ledger_admin = admin.site.get_model_admin(CreditTransaction)
_ledger_admin.actions = [*(_ledger_admin.actions or ()), export_ledger_csv]
