"""Counted figures from failure scenarios, printed at the end of the run (and so in CI logs)."""

from __future__ import annotations

FIGURES: list[dict[str, object]] = []


def record(figures: dict[str, object]) -> None:
    FIGURES.append(figures)


def table() -> list[str]:
    if not FIGURES:
        return []
    cols = ["scenario", "produced", "delivered", "duplicates", "lost", "recovery_s", "statuses"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for f in FIGURES:
        lines.append("| " + " | ".join(str(f.get(c, "")) for c in cols) + " |")
    return lines
