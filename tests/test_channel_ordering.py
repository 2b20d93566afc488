"""bot/channels/ordering.ConversationChains: one conversation's messages in order, conversations side by side, a
failure not stopping the next message, and a stop that really stops queued work."""

from __future__ import annotations

import asyncio

from bot.channels.ordering import ConversationChains


def test_a_conversation_keeps_its_order_and_others_do_not_wait() -> None:
    async def scenario() -> list[str]:
        chains, done, release = ConversationChains("test"), [], asyncio.Event()

        async def step(name: str, wait: bool = False) -> None:
            if wait:
                await release.wait()
            done.append(name)

        chains.chain("a", step("a1", wait=True))  # slow: holds a2 back, not b1
        chains.chain("a", step("a2"))
        chains.chain("b", step("b1"))
        await asyncio.sleep(0)
        for _ in range(10):
            if "b1" in done:
                break
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.wait(chains.tasks())
        return done

    assert asyncio.run(scenario()) == ["b1", "a1", "a2"]


def test_a_failed_message_does_not_stop_the_next_one() -> None:
    async def scenario() -> list[str]:
        chains, done = ConversationChains("test"), []

        async def fail() -> None:
            raise ValueError("malformed")

        async def ok() -> None:
            done.append("next")

        chains.chain("a", fail())
        chains.chain("a", ok())
        await asyncio.wait(chains.tasks())
        return done

    assert asyncio.run(scenario()) == ["next"]


def test_cancelling_the_tails_stops_queued_work() -> None:
    async def scenario() -> list[str]:
        chains, done, never = ConversationChains("test"), [], asyncio.Event()

        async def stuck() -> None:
            await never.wait()

        async def queued() -> None:
            done.append("ran")

        chains.chain("a", stuck())
        first = chains.tasks()[0]
        chains.chain("a", queued())
        await asyncio.sleep(0)
        for task in (first, *chains.tasks()):
            task.cancel()
        await asyncio.wait([first, *chains.tasks()])
        await asyncio.sleep(0.01)
        return done

    assert asyncio.run(scenario()) == []
