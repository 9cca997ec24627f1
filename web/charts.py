"""The wallet page's usage chart: bars of cost per day as SVG geometry, drawn by the server (no script, no inline style)."""

from dataclasses import dataclass
from decimal import Decimal

from billing.customer_selectors import DayUsage

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 8, 712, 12, 150  # the plot's box inside the SVG (user units)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # what a screen reader and a tooltip say: the day, its cost and calls
    day_label: str  # under the bar, for every seventh day ("" otherwise)

    @property
    def label_x(self) -> float:
        return round(
            self.x + self.width, 2
        )  # labels end at their bar's right edge: the last one stays inside


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: Decimal  # the tallest bar's cost (the top of the scale)
    total: Decimal
    label_y: int
    baseline: int


def usage_chart(days: list[DayUsage]) -> Chart:
    """One bar per day, scaled to the busiest day; a day without calls is a zero bar so time reads evenly."""
    peak = max((d.cost for d in days), default=Decimal(0))
    slot = (RIGHT - LEFT) / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        height = float(day.cost / peak) * (BOTTOM - TOP) if peak > 0 else 0.0
        calls = "call" if day.calls == 1 else "calls"
        bars.append(
            Bar(
                x=round(LEFT + index * slot + slot * 0.15, 2),
                y=round(BOTTOM - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
                label=f"{day.day.isoformat()}: {day.cost} credits, {day.calls} {calls}",
                day_label=day.day.strftime("%b %d") if (len(days) - 1 - index) % 7 == 0 else "",
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        peak=peak,
        total=sum((d.cost for d in days), Decimal(0)),
        label_y=BOTTOM + 18,
        baseline=BOTTOM,
    )
