"""Fixtures of the system tests: real server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.processes import ServerProcess


@pytest.fixture
async def processes() -> AsyncIterator[list[ServerProcess]]:
    """Server processes a test started (it appends them): killed at its end if still up."""
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        if proc.process.returncode is None:
            proc.process.kill()
            await proc.process.wait()
