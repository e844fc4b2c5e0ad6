"""``GET /``, the browser page, over plain HTTP against a real server process: what needs
no browser (``tests/system/test_browser.py`` plays the page in Chromium)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.processes import ServerProcess, launch


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    process = await launch("--drain-seconds", "1")
    try:
        yield process
    finally:
        await process.stop()


@pytest.mark.system  # a real server process, or a program from outside
async def test_the_page_is_cached_by_etag(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.http}/") as response:
            assert response.status == 200
            etag = response.headers["ETag"]
            assert "<script>" in await response.text()
        async with http.get(f"{server.http}/", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
            assert response.headers["Content-Security-Policy"]
        async with http.get(f"{server.http}/", headers={"If-None-Match": '"stale"'}) as response:
            assert response.status == 200
