"""The link's batches on a real redis-server: when a command leaves, and with what."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from game_server.cluster.link import Op, RedisLink
from tests.support.redis import RedisServer


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_server.url)
    await link.start()
    yield link
    await link.close()


def key() -> str:
    return f"test-link-{random.getrandbits(48):x}"


async def test_a_command_that_may_wait_leaves_with_the_next_pressing_one(
    link: RedisLink,
) -> None:
    patient, other = key(), key()
    replies: list[Any] = []
    link.submit(("SET", patient, "1"), replies.append, within=30.0)
    await asyncio.sleep(0.1)
    assert replies == []  # not due, and nothing else left: still here
    before = link.batches
    assert await link.call(("EXISTS", patient, other)) == 1  # it went first, in one batch
    assert link.batches == before + 1
    assert replies == [b"OK"]


async def test_a_command_leaves_by_its_own_deadline(link: RedisLink) -> None:
    done = asyncio.Event()
    started = asyncio.get_running_loop().time()
    link.submit(("SET", key(), "1"), lambda reply: done.set(), within=0.2)
    await asyncio.wait_for(done.wait(), 5.0)
    assert asyncio.get_running_loop().time() - started >= 0.2


async def test_what_the_gatherers_hold_goes_first_in_every_batch(link: RedisLink) -> None:
    """A checkpoint gathered now is applied before a command submitted earlier in the
    same batch (a relayed result never reaches Redis before its round's checkpoint)."""
    name = key()
    held: list[Op] = []
    link.gatherers.append(lambda: [held.pop()] if held else [])
    link.submit(("GET", name), within=0.05)
    first = asyncio.get_running_loop().create_future()
    link.submit(("GET", name), first.set_result, within=0.05)
    held.append(((("SET", name, "gathered"),), None))
    assert await asyncio.wait_for(first, 5.0) == b"gathered"
    # And again in the next batch: the gatherers are asked for each one.
    held.append(((("SET", name, "again"),), None))
    assert await link.call(("GET", name)) == b"again"
