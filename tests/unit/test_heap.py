"""HeapGuard: instances' objects leave the collector's sight, and come back once removed."""

from __future__ import annotations

import gc
import weakref

from gateway.heap import MIN_REMOVED, HeapGuard


class Thing:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_arrivals_freeze_and_removals_thaw_and_collect() -> None:
    live: list[Thing] = []
    guard = HeapGuard(lambda: live)
    try:
        gc.unfreeze()
        guard.check()
        assert guard.freezes == 0  # nothing arrived
        live += [Thing() for _ in range(40)]
        guard.check()
        assert guard.freezes == 1 and gc.get_freeze_count() > 0
        guard.check()
        assert guard.freezes == 1  # nothing new: no work

        # Fewer removals than the threshold: the frozen garbage waits (a collection now
        # would not see it either).
        gone = [weakref.ref(t) for t in live[:MIN_REMOVED]]
        del live[: MIN_REMOVED - 1]
        guard.check()
        gc.collect()
        assert guard.thaws == 0 and all(r() is not None for r in gone)
        del live[:1]
        guard.check()
        assert guard.thaws == 1
        assert all(r() is None for r in gone)  # the thaw's collection freed the cycles
        assert all(t.me is t for t in live) and gc.get_freeze_count() > 0  # survivors refrozen
    finally:
        gc.unfreeze()
