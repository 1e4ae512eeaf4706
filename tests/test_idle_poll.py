"""The Dispatcher's polls: short while work arrives, backing off while none does, cut short by a wake."""

from __future__ import annotations

import asyncio
import time

from serve_app.dispatcher import IdlePoll


def test_an_idle_poll_backs_off_to_its_ceiling_and_a_found_claim_resets_it():
    async def run() -> list[float]:
        poll = IdlePoll(0.01, 0.05)
        seen = []
        for _ in range(4):
            await poll.wait(found=False)
            seen.append(poll.interval)
        poll.found()
        seen.append(poll.interval)
        await poll.wait(found=True)
        seen.append(poll.interval)
        return seen

    assert asyncio.run(run()) == [0.02, 0.04, 0.05, 0.05, 0.01, 0.01]


def test_a_wake_ends_the_wait_at_once_even_when_it_came_during_the_claim():
    async def run() -> tuple[float, float, float]:
        poll = IdlePoll(0.5, 10.0)
        poll.interval = 10.0  # long idle
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, poll.wake)
        t = time.monotonic()
        await poll.wait(found=False)
        woken = time.monotonic() - t
        interval = poll.interval
        poll.wake()  # arrives while the loop claims: the next wait returns at once
        t = time.monotonic()
        await poll.wait(found=False)
        early = time.monotonic() - t
        return woken, interval, early

    woken, interval, early = asyncio.run(run())
    assert woken < 1.0 and early < 0.2
    assert interval == 0.5  # a wake means work: the busy pace again


def test_the_event_is_spent_by_the_wait_so_an_idle_loop_does_not_spin():
    async def run() -> float:
        poll = IdlePoll(0.05, 0.05)
        poll.wake()
        await poll.wait(found=False)  # returns at once, spends the wake
        t = time.monotonic()
        await poll.wait(found=False)
        return time.monotonic() - t

    assert asyncio.run(run()) >= 0.04
