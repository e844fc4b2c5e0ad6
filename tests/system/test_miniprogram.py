"""The WeChat mini-program client (``clients/miniprogram``) under node, against real servers.

Its node tests drive the mini-program's own code through a stand-in for ``wx``
(``test/wx-stub.js``: real WebSockets, fetch, storage, pages): a match against a house bot
through the pages, two phones playing each other, the heartbeat, reconnecting and resuming,
and WeChat login against a second server whose code2session is a fake the node test runs.
Skipped only when node or npm is missing (and then failed instead under ``.ci/run``,
which installs them: see ``tests/support/processes.require_program``).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.support.processes import FAST_GAME, ServerProcess, free_port, launch, require_program

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "miniprogram"
NODE_TIMEOUT = 60.0
LOGIN_TEST = "test/login.test.js"
# Variables the node tests read; cleared first so the caller's environment cannot leak in.
TEST_VARIABLES = ("RPS_WS_URL", "RPS_HTTP_URL", "RPS_LOGIN_HTTP_URL", "RPS_LOGIN_FAKE_PORT")


@pytest.fixture(scope="module")
def node_tools() -> str:
    """node's path, once ``npm ci`` has run if node_modules is missing or stale."""
    hint = "needed for the mini-program's tests; .ci/run installs it"
    node, npm = require_program("node", hint), require_program("npm", hint)
    lock = CLIENT / "package-lock.json"
    installed = CLIENT / "node_modules" / ".package-lock.json"  # written by every npm ci
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    process = await launch("--port", "0", "--drain-seconds", "1", *FAST_GAME)
    try:
        yield process
    finally:
        await process.stop()


def server_log(server: ServerProcess) -> str:
    return "\n".join(orjson.dumps(event).decode() for event in server.events[-30:])


async def run_node(
    node: str, files: list[str], variables: dict[str, str], server: ServerProcess
) -> dict[str, int]:
    """``node --test FILES``; fails with node's output unless every test ran and passed."""
    env = {key: value for key, value in os.environ.items() if key not in TEST_VARIABLES}
    process = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-reporter=tap",
        *files,
        cwd=CLIENT,
        env={**env, **variables},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(NODE_TIMEOUT):
            raw, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        raw, _ = await process.communicate()
        pytest.fail(
            f"node --test did not finish within {NODE_TIMEOUT:g} s:\n{raw.decode(errors='replace')}"
        )
    output = raw.decode(errors="replace")
    counts = {key: int(n) for key, n in re.findall(r"^# (\w+) (\d+)$", output, re.MULTILINE)}
    log = server_log(server)
    report = f"node --test exited {process.returncode}:\n{output}\nserver log:\n{log}"
    assert process.returncode == 0, report
    assert counts.get("fail") == 0, report
    assert counts.get("cancelled") == 0, report
    assert counts.get("skipped") == 0, report
    assert counts.get("todo") == 0, report
    return counts


async def test_miniprogram_plays_against_a_real_server(
    node_tools: str, server: ServerProcess
) -> None:
    """Pages, a bot match, two phones, the heartbeat, reconnecting, identity, friends."""
    files = sorted(str(p.relative_to(CLIENT)) for p in (CLIENT / "test").glob("*.test.js"))
    files.remove(LOGIN_TEST)  # needs the WeChat options: the test below
    assert len(files) >= 5, files
    counts = await run_node(
        node_tools, files, {"RPS_WS_URL": server.url, "RPS_HTTP_URL": server.http}, server
    )
    assert counts["pass"] >= 25, counts


async def test_miniprogram_wechat_login(node_tools: str) -> None:
    """wx.login -> POST /applet/login -> hello {token}, on a server with WeChat configured."""
    fake_port = free_port()  # the node test serves the fake code2session here
    server = await launch(
        "--port",
        "0",
        "--drain-seconds",
        "1",
        *FAST_GAME,
        "--wechat-appid",
        "wxTEST",
        "--wechat-secret",
        "s3cret",
        "--wechat-api-base",
        f"http://127.0.0.1:{fake_port}",
    )
    try:
        variables = {"RPS_LOGIN_HTTP_URL": server.http, "RPS_LOGIN_FAKE_PORT": str(fake_port)}
        counts = await run_node(node_tools, [LOGIN_TEST], variables, server)
        assert counts["pass"] == 3, counts
    finally:
        await server.stop()
