"""Latency statistics for the bench scripts: count, rate, p50, p99 from a list of seconds."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    n: int
    mean: float
    p50: float
    p99: float
    max: float

    def __str__(self) -> str:
        rate = 1 / self.mean if self.mean else 0
        return (
            f"n={self.n:6d}  {rate:8.1f}/s  p50={self.p50 * 1000:8.2f} ms  p99={self.p99 * 1000:8.2f} ms"
            f"  max={self.max * 1000:8.2f} ms"
        )


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(seconds: list[float]) -> Stats:
    ordered = sorted(seconds)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    return Stats(
        n=len(ordered),
        mean=mean,
        p50=percentile(ordered, 0.5),
        p99=percentile(ordered, 0.99),
        max=ordered[-1] if ordered else 0.0,
    )
