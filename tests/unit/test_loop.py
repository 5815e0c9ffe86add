"""SlackLoop: far timers are grouped on 100 ms ticks, near ones keep their time, none is early."""

from __future__ import annotations

import asyncio
import math

from gateway import loop


def test_far_timers_share_a_tick_and_near_ones_are_exact() -> None:
    ev = loop.SlackLoop()
    try:
        now = ev.time()
        far = [ev.call_at(now + 3 + i * 0.013, lambda: None) for i in range(5)]
        whens = {round(h.when(), 6) for h in far}
        assert len(whens) <= 2  # five timers 13 ms apart: one or two 100 ms ticks
        for h, i in zip(far, range(5), strict=True):
            asked = now + 3 + i * 0.013
            assert asked <= h.when() < asked + loop.SLACK_S  # never early, late < slack
            assert math.isclose(h.when() / loop.SLACK_S, round(h.when() / loop.SLACK_S))
        near = ev.call_at(now + 0.5037, lambda: None)
        assert near.when() == now + 0.5037
        later = ev.call_later(0.25, lambda: None)
        assert abs(later.when() - (ev.time() + 0.25)) < 0.01
    finally:
        ev.close()


def test_run_uses_the_slack_loop() -> None:
    async def which() -> type:
        return type(asyncio.get_running_loop())

    assert loop.run(which()) is loop.SlackLoop
