"""Figures for the bench scripts: count, rate, p50, p99 from a list of seconds; CPU by process from /proc."""

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


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


def cpu_ticks(root_pids: dict[str, int]) -> dict[tuple[str, int], int]:
    """CPU ticks (user + system, from /proc) of each named process and of its direct children, by pid."""
    owner = {str(pid): name for name, pid in root_pids.items()}
    ticks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = owner.get(stat.parent.name) or owner.get(fields[1])
        if name:
            ticks[(name, int(stat.parent.name))] = int(fields[11]) + int(fields[12])
    return ticks


def cpu_between(before: dict, after: dict) -> Counter:
    """CPU seconds by name between two cpu_ticks() samples (a process gone by `after` is not counted)."""
    spent = Counter()
    for (name, pid), ticks in after.items():
        spent[name] += (ticks - before.get((name, pid), 0)) / os.sysconf("SC_CLK_TCK")
    return spent
