"""The deployment files, run for real where the tools exist.

- ``process.json`` started by a real pm2 (with its own ``PM2_HOME``), then stopped;
- ``deploy/nginx.conf`` served by a real nginx (TLS with a throwaway certificate) in front
  of a real server process, with checking bot clients playing whole matches through it;
- ``deploy/rps-server.service`` read as an INI file and, where systemd-analyze exists,
  verified by systemd; its ``MemoryDenyWriteExecute=yes`` tried on the real server with
  the kernel's own W^X switch (``PR_SET_MDWE``, Linux 6.3+);
- ``deploy/rps-server.env.example`` against the server's ``RPS_*`` variables.

The pm2, nginx and systemd-analyze tests skip when the program is missing, or fail then
under ``.ci/run``, which installs them (``tests/support/processes.require_program``).
"""

from __future__ import annotations

import asyncio
import configparser
import io
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots.client import BotClient, BotReport, RoundLedger
from game_server.config import ServerConfig
from protocol import BotMode
from tests.support.processes import (
    FAST_GAME,
    free_port,
    launch,
    require_program,
    self_signed_certificate,
)
from tests.support.redis import RedisServer
from tests.support.waiting import until_answers
from tests.support.wire import Player

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PYTHON = sys.executable
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DRAIN_SECONDS: float = getattr(ServerConfig(), "drain_seconds", 30.0)
HEARTBEAT_SECONDS = ServerConfig().heartbeat or 30.0


def text_of(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else "(no log)"


def listening_port(log: Path) -> int | None:
    """The port of the server's JSON "listening" line in ``log``, if it is there yet."""
    for line in text_of(log).splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "listening":
                return int(event["port"])
    return None


async def start_server(
    log: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``python -m game_server`` with stderr going to ``log``; wait for "listening".

    A file rather than a pipe: nobody has to keep reading it while the server logs.
    """
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *prefix,
            PYTHON,
            "-m",
            "game_server",
            *args,
            stderr=sink,
            # Storage in memory unless a test says otherwise: no file in the checkout.
            env={**os.environ, "RPS_DB": ":memory:", **(env or {})},
            cwd=ROOT,
        )
    try:
        async with asyncio.timeout(15):
            while (port := listening_port(log)) is None:
                if process.returncode is not None:
                    pytest.fail(f"server exited with {process.returncode}:\n{text_of(log)}")
                await asyncio.sleep(0.05)
            return process, port
    except TimeoutError:
        await stop(process)
        pytest.fail(f"server did not say listening within 15 s:\n{text_of(log)}")


async def stop(process: asyncio.subprocess.Process | None) -> None:
    """Last resort in ``finally``: SIGTERM, then SIGKILL whatever is still running.

    SIGTERM first so that an nginx master takes its workers down with it (a SIGKILLed
    master leaves them behind, still listening).
    """
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        await process.wait()


async def exit_code(process: asyncio.subprocess.Process, sig: int) -> int | None:
    """Send ``sig`` and wait up to 15 s for the exit; the code, or None if still running."""
    process.send_signal(sig)
    try:
        return await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        return None


def assert_clean(report: BotReport) -> None:
    assert report.violations == [], report.violations
    assert report.errors == [], report.errors
    assert report.violation_count == 0
    assert report.error_count == 0


# ---------------------------------------------------------------- static checks


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "rps-server.service").read_text())
    return unit


def seconds(value: str) -> float:
    """systemd time spans as used here: ``45``, ``45s``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts, f"not a time span: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_systemd_unit_waits_for_ready_drains_and_is_locked_down() -> None:
    unit = read_unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/opt/rps-server/.venv/bin/python -m game_server"
    assert service["EnvironmentFile"] == "/etc/rps-server/rps-server.env"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert seconds(service["RestartSec"]) > 0
    # systemd must not SIGKILL in the middle of the graceful drain.
    assert seconds(service["TimeoutStopSec"]) > DRAIN_SECONDS
    assert service["User"] == "rps"
    assert service["StateDirectory"] == "rps-server"
    assert service["WorkingDirectory"]
    assert service["LimitNOFILE"] == "65536"
    assert service["CapabilityBoundingSet"] == ""
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["SystemCallArchitectures"] == "native"
    # AF_UNIX carries the READY=1/STOPPING=1 datagrams to $NOTIFY_SOCKET.
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def unit_lines(name: str) -> list[str]:
    """A unit's settings and sections, comments and blank lines left out."""
    text = (DEPLOY / name).read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_cluster_template_is_the_unit_plus_its_instance() -> None:
    """rps-server@.service differs from rps-server.service only where the instance
    matters, so a change to one cannot be forgotten in the other."""
    base, template = unit_lines("rps-server.service"), unit_lines("rps-server@.service")
    instance = [line for line in template if "%i" in line]
    assert instance == [
        "Description=Rock-paper-scissors game server, cluster node on port %i",
        "ExecStart=/opt/rps-server/.venv/bin/python -m game_server --port %i --node-id %H-%i",
    ]
    assert [line for line in template if "%i" not in line] == [
        line for line in base if not line.startswith(("Description=", "ExecStart="))
    ]


@pytest.mark.parametrize(
    ("shipped", "name"),
    [
        ("rps-server.service", "rps-server.service"),
        ("rps-server@.service", "rps-server@9601.service"),
    ],
)
def test_systemd_analyze_verifies_the_unit(tmp_path: Path, shipped: str, name: str) -> None:
    """The units as shipped (the template as one of its instances), with their install
    paths pointed at this checkout."""
    systemd_analyze = require_program("systemd-analyze", "Debian's systemd; .ci/run installs it")
    if not VENV_PYTHON.exists():
        pytest.skip(f"{VENV_PYTHON} does not exist (python3 dev.py test creates it)")
    env_file = tmp_path / "rps-server.env"
    env_file.write_text("RPS_LOG_FORMAT=json\n")
    text = (DEPLOY / shipped).read_text()
    text = text.replace("/etc/rps-server/rps-server.env", str(env_file))
    text = text.replace("/opt/rps-server", str(ROOT))
    unit = tmp_path / name
    unit.write_text(text)
    result = subprocess.run(
        [systemd_analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings: none may mention the unit.
    assert name not in result.stderr, result.stderr


def test_process_json_is_a_pm2_app_with_room_to_drain() -> None:
    config = json.loads((ROOT / "process.json").read_text())
    (app,) = config["apps"]
    assert app["name"] == "rps-server"
    assert app["exec_mode"] == "fork"
    # The virtualenv's python runs -m game_server itself (pm2 cannot run "-m" as a script).
    assert app["script"] == ".venv/bin/python"
    assert app["interpreter"] == "none"
    assert app["args"] == ["-m", "game_server"]
    assert app["env"]["PORT"] == "9595"
    assert app["env"]["PYTHONUNBUFFERED"] == "1"
    assert app["env"]["RPS_LOG_FORMAT"] == "json"
    # pm2 SIGKILLs kill_timeout ms after its SIGINT: leave the drain room to finish.
    assert app["kill_timeout"] > DRAIN_SECONDS * 1000
    assert app["autorestart"] is True
    assert app["exp_backoff_restart_delay"] > 0
    assert app["max_restarts"] > 0
    # pm2 reports a death by signal (SIGKILL, OOM killer) as exit code 0: listing 0 here
    # would leave a killed server down.
    assert 0 not in app.get("stop_exit_codes", [])


def test_nginx_conf_proxies_websockets_and_keeps_metrics_private() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{", text)
    websocket = re.search(r"location /applet/websocket \{(.*?)\}", text, re.S)
    assert websocket is not None
    block = websocket.group(1)
    for directive in (
        "proxy_pass http://rps_game;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_buffering off;",
    ):
        assert directive in block, directive
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", block)
    assert read_timeout is not None
    assert int(read_timeout.group(1)) > HEARTBEAT_SECONDS
    upstream = re.search(r"upstream rps_game \{(.*?)\}", text, re.S)
    assert upstream is not None
    assert "server 127.0.0.1:9595;" in upstream.group(1)
    metrics = re.search(r"location = /metrics \{(.*?)\}", text, re.S)
    assert metrics is not None
    assert "allow 127.0.0.1;" in metrics.group(1)
    assert "deny all;" in metrics.group(1)


async def test_env_example_documents_every_variable_with_its_default(tmp_path: Path) -> None:
    """Every ``RPS_*`` the server reads is in the example, commented ones at their default,
    and the example as shipped starts a server."""
    settings = pytest.importorskip("game_server.cli.settings")
    if not hasattr(settings, "parse_settings"):
        pytest.skip("this server version reads no RPS_* variables")
    text = (DEPLOY / "rps-server.env.example").read_text()
    active = dict(re.findall(r"^(RPS_[A-Z_]+)=(.*)$", text, re.M))
    commented = dict(re.findall(r"^#(RPS_[A-Z_]+)=(.*)$", text, re.M))
    assert not active.keys() & commented.keys()
    helper = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "game_server", "--help", stdout=asyncio.subprocess.PIPE
    )
    help_text = (await helper.communicate())[0].decode()
    known = set(re.findall(r"\[env\s+(RPS_[A-Z_]+)\]", help_text))
    assert known, "--help names no RPS_* variables"
    assert active.keys() | commented.keys() == known

    defaults = vars(settings.parse_settings([], environ={}))
    # Examples with no default: paths, and a secret to replace.
    files = {
        *("RPS_CERTFILE", "RPS_KEYFILE", "RPS_CONFIG"),
        *("RPS_TOKEN_SECRET", "RPS_WECHAT_APPID", "RPS_WECHAT_SECRET"),
        *("RPS_REDIS", "RPS_NODE_ID"),  # a cluster's: its Redis, this node's name
        "RPS_KEEP_MATCHES",  # unset keeps every match: the example shows a choice
    }
    for name, value in commented.items():
        if name in files:
            continue
        dest = name.removeprefix("RPS_").lower()
        parsed = vars(settings.parse_settings([], environ={name: value}))[dest]
        assert parsed == defaults[dest], f"#{name}={value} is not the default {defaults[dest]!r}"

    # The example's database lives where systemd makes a state directory; here, a temporary one.
    env = {**active, "RPS_HOST": "127.0.0.1", "RPS_PORT": "0", "RPS_DB": str(tmp_path / "rps.db")}
    log = tmp_path / "server.log"
    process, _ = await start_server(log, env=env)
    try:
        assert await exit_code(process, signal.SIGTERM) == 0, text_of(log)
    finally:
        await stop(process)


# ---------------------------------------------------------------- pm2


def pm2_apps(run: Any) -> dict[str, dict[str, Any]]:
    out: str = run("jlist").stdout
    return {app["name"]: app for app in json.loads(out[out.index("[") :])}


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_pm2_runs_process_json(tmp_path: Path) -> None:
    """process.json as shipped, but another app name and port, under a private PM2_HOME."""
    pm2 = require_program("pm2", "npm install -g pm2; .ci/run installs it")
    if not VENV_PYTHON.exists():
        pytest.skip(f"{VENV_PYTHON} does not exist (python3 dev.py test creates it)")
    config = json.loads((ROOT / "process.json").read_text())
    app = config["apps"][0]
    name = f"rps-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    app["name"] = name
    app["env"]["PORT"] = str(port)
    app["env"]["RPS_HOST"] = "127.0.0.1"  # ignored by servers without RPS_* support
    app["env"]["RPS_DB"] = str(tmp_path / "rps.db")  # not a file in the checkout
    conf = tmp_path / "process.json"
    conf.write_text(json.dumps(config))
    pm2_home = tmp_path / "pm2"  # never the user's ~/.pm2
    env = {**os.environ, "PM2_HOME": str(pm2_home)}
    env.pop("NOTIFY_SOCKET", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # Relative paths in process.json resolve against pm2's working directory.
        return subprocess.run(
            [pm2, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    log = pm2_home / "logs" / f"{name}-error.log"
    try:
        started = run("start", str(conf))
        assert started.returncode == 0, started.stdout + started.stderr
        deadline = time.monotonic() + 20
        status, health = 0, None
        while time.monotonic() < deadline:
            try:
                status, health = get_json(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                time.sleep(0.2)
                continue
            if status == 200:
                break
        else:
            pytest.fail(f"no /healthz through pm2 in 20 s: {pm2_apps(run)}\n{text_of(log)}")
        assert health["status"] == "ok"

        pm2_env = pm2_apps(run)[name]["pm2_env"]
        assert pm2_env["status"] == "online"
        assert pm2_env["exec_mode"] == "fork_mode"
        assert pm2_env["exec_interpreter"] == "none"
        assert Path(pm2_env["pm_exec_path"]) == VENV_PYTHON
        assert pm2_env["kill_timeout"] == app["kill_timeout"]

        # pm2 stop sends SIGINT: the server drains (nothing to wait for here) and exits
        # by itself, long before the SIGKILL that kill_timeout holds back.
        begun = time.monotonic()
        stopped = run("stop", name)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert time.monotonic() - begun < app["kill_timeout"] / 1000 / 2
        assert pm2_apps(run)[name]["pm2_env"]["status"] == "stopped"  # and not restarted
        events = [json.loads(line)["event"] for line in log.read_text().splitlines() if line]
        assert "listening" in events
        assert events[-1] == "stopped", events
        with pytest.raises(urllib.error.URLError):
            get_json(f"http://127.0.0.1:{port}/healthz")
    finally:
        run("delete", name)
        run("kill")  # this test's own daemon (PM2_HOME above)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (pm2 numbers its instances'
    ports from one)."""
    for _ in range(50):
        first = random.randrange(20000, 60000)
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    pytest.fail("no run of free ports")


def test_pm2_runs_three_cluster_nodes(tmp_path: Path, redis_server: RedisServer) -> None:
    """deploy/process-cluster.json as shipped (another name, ports and Redis): three nodes
    on consecutive ports, one cluster."""
    pm2 = require_program("pm2", "npm install -g pm2; .ci/run installs it")
    if not VENV_PYTHON.exists():
        pytest.skip(f"{VENV_PYTHON} does not exist (python3 dev.py test creates it)")
    config = json.loads((DEPLOY / "process-cluster.json").read_text())
    app = config["apps"][0]
    assert (app["instances"], app["increment_var"]) == (3, "PORT")
    name = f"rps-nodes-{uuid.uuid4().hex[:8]}"
    first = free_ports(3)
    app["name"] = name
    app["env"].update(
        PORT=str(first),
        RPS_REDIS=redis_server.url,
        RPS_DB=str(tmp_path / "rps.db"),
        RPS_TOKEN_SECRET="pm2 cluster's token secret",
    )
    conf = tmp_path / "process-cluster.json"
    conf.write_text(json.dumps(config))
    env = {**os.environ, "PM2_HOME": str(tmp_path / "pm2")}
    env.pop("NOTIFY_SOCKET", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pm2, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    try:
        started = run("start", str(conf))
        assert started.returncode == 0, started.stdout + started.stderr
        nodes: dict[int, Any] = {}
        deadline = time.monotonic() + 30
        while len(nodes) < 3 and time.monotonic() < deadline:
            for port in range(first, first + 3):
                try:
                    status, health = get_json(f"http://127.0.0.1:{port}/healthz")
                except OSError:
                    continue
                if status == 200:
                    nodes[port] = health
            time.sleep(0.2)
        assert len(nodes) == 3, f"{nodes}: {pm2_apps(run)}"
        assert len({health["node"] for health in nodes.values()}) == 3  # host-pid each
        assert all(health["redis"] == "ok" for health in nodes.values())
    finally:
        run("delete", name)
        run("kill")


# ---------------------------------------------------------------- nginx


def nginx_test_config(
    directory: Path, *, upstream: int | list[int], https: int, http: int, cert: Path, key: Path
) -> Path:
    """deploy/nginx.conf as shipped, moved to 127.0.0.1 ports and a throwaway certificate;
    several upstream ports make the nodes of a cluster."""
    site = (DEPLOY / "nginx.conf").read_text()
    ports = [upstream] if isinstance(upstream, int) else upstream
    servers = "\n".join(f"    server 127.0.0.1:{port};" for port in ports)
    replacements = [
        (r"^\s*listen \[::\]:.*$", ""),  # the test machine may have no IPv6
        (r"listen 443 ssl", f"listen 127.0.0.1:{https} ssl"),
        (r"listen 80;", f"listen 127.0.0.1:{http};"),
        (r"^    server 127\.0\.0\.1:9595;$", servers),
        (r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};"),
    ]
    for pattern, replacement in replacements:
        site, count = re.subn(pattern, replacement, site, flags=re.M)
        assert count, f"deploy/nginx.conf has nothing matching {pattern!r} any more"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach tmp_path
    conf = directory / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {directory}/access.log;\n"
        f"    client_body_temp_path {directory}/client_body;\n"
        f"    proxy_temp_path {directory}/proxy;\n"
        f"{site}\n"
        "}\n"
    )
    return conf


async def wait_for_ok(session: aiohttp.ClientSession, url: str, within: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within
    last: object = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
                last = response.status
        except aiohttp.ClientError as exc:
            last = exc
        await asyncio.sleep(0.1)
    pytest.fail(f"{url}: no 200 within {within} s (last: {last!r})")


async def test_a_cluster_behind_nginx_plays_as_one_server(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Three nodes in the upstream of deploy/nginx.conf, no stickiness: players land on
    any node and still meet, through the real nginx; so do two friends with a room code."""
    nginx_binary = require_program("nginx", "apt-get install nginx-light; .ci/run installs it")
    import redis as redis_client

    redis_client.Redis.from_url(redis_server.url).flushall()
    cert, key = self_signed_certificate(tmp_path)
    common = (
        *FAST_GAME,
        *("--redis", redis_server.url, "--token-secret", "nginx cluster's token secret"),
        *("--db", str(tmp_path / "rps.db")),
    )
    nodes = [await launch(*common, "--node-id", f"web{n}") for n in range(3)]
    nginx: asyncio.subprocess.Process | None = None
    try:
        https, http = free_port(), free_port()
        conf = nginx_test_config(
            tmp_path,
            upstream=[node.port for node in nodes],
            https=https,
            http=http,
            cert=cert,
            key=key,
        )
        command = [
            nginx_binary,
            "-c",
            str(conf),
            "-p",
            str(tmp_path),
            "-g",
            f"daemon off; pid {tmp_path}/nginx.pid; error_log stderr;",
        ]
        with (tmp_path / "nginx.log").open("wb") as sink:
            nginx = await asyncio.create_subprocess_exec(*command, stderr=sink)
        tls = ssl.create_default_context(cafile=str(cert))
        url = f"wss://127.0.0.1:{https}/applet/websocket"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
            await wait_for_ok(session, f"https://127.0.0.1:{https}/healthz")
            ledger = RoundLedger()
            bots = [
                BotClient(
                    url, mode=BotMode.NEVER, name=f"b{i}", rng=random.Random(i), ledger=ledger
                )
                for i in range(6)
            ]

            async def play(index: int, bot: BotClient) -> BotReport:
                # One after another: each join then meets the bot before it, which nginx
                # sent to another node. Bots started together meet on their own node: a
                # node sends its joins to Redis in one batch, so they queue side by side
                # (and nobody would have to cross nodes here).
                await asyncio.sleep(0.3 * index)
                return await bot.play(2, session=session)

            reports = await asyncio.wait_for(
                asyncio.gather(*(play(i, bot) for i, bot in enumerate(bots))), timeout=60
            )
            # Round-robin: the second connection lands on another node than the first.
            ann = Player(await session.ws_connect(url))
            await ann.send(type="hello", name="Ann")
            await ann.expect("hi")
            await ann.send(type="create_room", id=1)
            code = (await ann.expect("room"))["code"]
            bob = Player(await session.ws_connect(url))
            await bob.send(type="hello", name="Bob")
            await bob.expect("hi")
            await bob.send(type="join", room=code, id=2)
            assert (await bob.expect("start"))["opponent"]["name"] == "Ann"
            assert (await ann.expect("start"))["opponent"]["name"] == "Bob"
            await ann.send(type="leave", id=3)  # forfeits: the match ends for both
            assert (await bob.expect("result", skip=("movement",)))["match_over"]
            await ann.ws.close()
            await bob.ws.close()
        for report in reports:
            assert report.matches == 2
            assert_clean(report)
        assert ledger.paired >= 6
        async with aiohttp.ClientSession() as plain:

            async def healths() -> list[dict[str, Any]]:
                return [await (await plain.get(f"{node.http}/healthz")).json() for node in nodes]

            async def players() -> int:
                return sum(h["players"] for h in await healths())

            # Every player has gone (a forwarded connection's end reaches its player's node
            # through Redis, a moment later).
            await until_answers(players, 0)
            health = await healths()
        assert {h["node"] for h in health} == {"web0", "web1", "web2"}
        assert sum(h["relayed_out"] for h in health) > 0  # players met across nodes
        assert sum(h["friends_in"] for h in health) == 1  # Bob went to Ann's room's node
    finally:
        if nginx is not None and nginx.returncode is None:
            nginx.terminate()
            await nginx.wait()
        for node in nodes:
            await node.stop()


async def demo_meets_its_robot(session: aiohttp.ClientSession, host: str) -> None:
    """The demo's page and socket class over wss://``host``: open, hello, join, then the
    robot's start. The robot is a robot-N whose picture nginx serves too; the socket
    closes before the game's 3 s are up (a dropped demo client forfeits at once)."""
    page_url = f"wss://{host}/applet/websocket/socket.io/"  # `${socketPath}/`
    ws = await session.ws_connect(f"{page_url}/?EIO=3&transport=websocket")
    try:
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        assert await ws.receive_str(timeout=5) == "40"
        user = {"uid": "demo-uid", "uname": "Demo", "uavatar": None}
        await ws.send_str("42" + json.dumps(["hello", {"user": user}]))
        assert json.loads((await ws.receive_str(timeout=5))[2:])[0] == "hi"
        await ws.send_str('42["join"]')
        while True:  # the robot sits down after 1 s; its movement may come first
            event, data = json.loads((await ws.receive_str(timeout=5))[2:])
            if event == "start":
                break
        (robot,) = [u for u in data["roomUsers"] if u["uid"] != "demo-uid"]
        assert re.fullmatch(r"robot-[0-9]+", robot["uid"]), robot
        # https (nginx's X-Forwarded-Proto, from a trusted proxy) on nginx's Host, which
        # carries no port ($host): behind port 443 that is the URL the client reached.
        assert robot["uavatar"] == "https://127.0.0.1/applet/avatars/robot.png", robot
    finally:
        await ws.close()
    async with session.get(f"https://{host}/applet/avatars/robot.png") as response:
        assert response.status == 200
        assert response.content_type == "image/png"


async def avatar_through_nginx(session: aiohttp.ClientSession, host: str) -> None:
    """An upload the way wx.uploadFile sends one, through nginx: its URL is on the
    origin the client reached, and nginx serves it back; a body over the limit is
    refused (by nginx's client_max_body_size, with the same 413)."""
    from PIL import Image

    ws = await session.ws_connect(f"wss://{host}/applet/websocket")
    await ws.send_str('{"type": "hello", "name": "Pic"}')
    token = json.loads((await ws.receive(timeout=5)).data)["token"]
    await ws.close()
    out = io.BytesIO()
    Image.new("RGB", (200, 200), (90, 20, 160)).save(out, format="JPEG")
    form = aiohttp.FormData()
    form.add_field("avatar", out.getvalue(), filename="tmp.jpg")
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(f"https://{host}/applet/avatar", data=form, headers=headers) as r:
        assert r.status == 200, await r.text()
        avatar = (await r.json())["avatar"]
    path = avatar.removeprefix("https://127.0.0.1")  # nginx's Host ($host) has no port
    assert re.fullmatch(r"/applet/avatars/[0-9a-f]{32}", path), avatar
    async with session.get(f"https://{host}{path}") as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        assert "immutable" in response.headers["Cache-Control"]
    too_big = b"\xff\xd8\xff" + bytes(300 * 1024)
    async with session.post(f"https://{host}/applet/avatar", data=too_big, headers=headers) as r:
        assert r.status == 413


async def test_matches_through_nginx(tmp_path: Path) -> None:
    nginx_binary = require_program("nginx", "apt-get install nginx-light; .ci/run installs it")
    cert, key = self_signed_certificate(tmp_path)
    server_log, nginx_log = tmp_path / "server.log", tmp_path / "nginx.log"
    server: asyncio.subprocess.Process | None = None
    nginx: asyncio.subprocess.Process | None = None
    try:
        server, upstream = await start_server(
            server_log,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-format",
            "json",
            "--trusted-proxies",
            "127.0.0.1/32,::1/128",
            *FAST_GAME,
        )
        https, http = free_port(), free_port()
        conf = nginx_test_config(
            tmp_path, upstream=upstream, https=https, http=http, cert=cert, key=key
        )
        command = [
            nginx_binary,
            "-c",
            str(conf),
            "-p",
            str(tmp_path),
            "-g",
            f"daemon off; pid {tmp_path}/nginx.pid; error_log stderr;",
        ]
        checker = await asyncio.create_subprocess_exec(
            *command, "-t", stderr=asyncio.subprocess.PIPE
        )
        checked = (await checker.communicate())[1].decode()
        assert checker.returncode == 0, checked
        with nginx_log.open("wb") as sink:
            nginx = await asyncio.create_subprocess_exec(*command, stderr=sink)

        tls = ssl.create_default_context(cafile=str(cert))
        base = f"https://127.0.0.1:{https}"
        url = f"wss://127.0.0.1:{https}/applet/websocket"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
            await wait_for_ok(session, f"{base}/healthz")

            # One player against a house bot, and two players meeting each other, at once.
            ledger = RoundLedger()
            guest = BotClient(url, mode=BotMode.NOW, name="guest", rng=random.Random(1))
            pair = [
                BotClient(
                    url,
                    mode=BotMode.NEVER,
                    name=f"player{i}",
                    rng=random.Random(i),
                    ledger=ledger,
                )
                for i in (2, 3)
            ]
            reports = await asyncio.wait_for(
                asyncio.gather(*(bot.play(1, session=session) for bot in (guest, *pair))),
                timeout=60,
            )
            for report in reports:
                assert report.matches == 1
                assert_clean(report)
            assert guest.report.bot_opponents == 1
            assert [bot.report.bot_opponents for bot in pair] == [0, 0]
            assert ledger.paired >= 2  # best of 3: at least two rounds seen from both sides

            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
                health = await response.json()
            assert health["status"] == "ok"
            assert health["matches_finished"] == 2

            # A 2016 demo client, dialling exactly what its page builds (two slashes),
            # plays behind nginx and is shown its robot's picture through nginx too.
            await demo_meets_its_robot(session, f"127.0.0.1:{https}")
            await avatar_through_nginx(session, f"127.0.0.1:{https}")

            # The JSON endpoints and the browser page are proxied too; nothing else is.
            async with session.get(f"{base}/applet/leaderboard") as response:
                assert response.status == 200
                board = await response.json()
            assert {p["name"] for p in board["players"]} >= {"player2", "player3"}
            async with session.post(f"{base}/applet/login", json={"code": "c"}) as response:
                assert response.status == 404  # reached the server: no WeChat app configured
                assert (await response.json())["error"]["code"] == "login_unavailable"
            async with session.get(f"{base}/") as response:
                assert response.status == 200
                assert response.content_type == "text/html"
            async with session.get(f"{base}/elsewhere") as response:
                assert response.status == 404

            async with session.get(
                f"http://127.0.0.1:{http}/applet/websocket?x=1", allow_redirects=False
            ) as response:
                assert response.status == 301
                assert response.headers["Location"] == "https://127.0.0.1/applet/websocket?x=1"
            async with session.get(f"{base}/metrics") as response:
                assert response.status != 403  # allowed from 127.0.0.1

        # Any other address gets 403 for /metrics; 127.0.0.2 is another loopback address.
        outsider = aiohttp.TCPConnector(ssl=tls, local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=outsider) as session:
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 403
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            # The server sees this client's address, not nginx's nor the one it forged.
            ws = await session.ws_connect(url, headers={"X-Forwarded-For": "198.51.100.66"})
            await ws.send_str('{"type": "hello", "name": "outsider"}')
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hi"
            await ws.close()

        # Graceful: nginx finishes open requests, the server drains (nothing left to play).
        assert await exit_code(nginx, signal.SIGQUIT) == 0, text_of(nginx_log)
        assert await exit_code(server, signal.SIGTERM) == 0, text_of(server_log)
        events = [json.loads(line) for line in text_of(server_log).splitlines() if line[:1] == "{"]
        upgrades = [
            e["remote"] for e in events if e["event"] == "http" and e["path"] == "/applet/websocket"
        ]
        assert upgrades[-1] == "127.0.0.2", upgrades
    finally:
        await stop(nginx)
        await stop(server)


# ---------------------------------------------------------------- MemoryDenyWriteExecute

# Turn on the kernel's W^X rule for this process (PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN:
# inherited across execve), then become the program in argv. systemd's
# MemoryDenyWriteExecute=yes refuses the same mappings with a seccomp filter.
MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
"""
MDWE_PROBE = """
import ctypes, mmap
assert ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) == 1
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    print("enforced")
"""


async def test_server_plays_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """rps-server.service sets MemoryDenyWriteExecute=yes: CPython (no JIT), uvloop,
    orjson and aiohttp must never need a writable and executable mapping."""
    if sys.platform != "linux":
        pytest.skip("PR_SET_MDWE is Linux only")
    probe = await asyncio.create_subprocess_exec(
        *(PYTHON, "-c", MDWE_EXEC, PYTHON, "-c", MDWE_PROBE),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await probe.communicate()
    if out.strip() != b"enforced":
        pytest.skip(f"kernel without PR_SET_MDWE (Linux 6.3+): {probe.returncode} {err!r}")
    log = tmp_path / "server.log"
    server, port = await start_server(
        log,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-format",
        "json",
        *FAST_GAME,
        prefix=(PYTHON, "-c", MDWE_EXEC),
    )
    try:
        url = f"ws://127.0.0.1:{port}/applet/websocket"
        bots = [
            BotClient(url, mode=BotMode.NOW, rng=random.Random(4)),
            BotClient(url, mode=BotMode.NEVER, rng=random.Random(5)),
            BotClient(url, mode=BotMode.NEVER, rng=random.Random(6)),
        ]
        reports = await asyncio.wait_for(asyncio.gather(*(b.play(2) for b in bots)), 60)
        for report in reports:
            assert report.matches == 2
            assert_clean(report)
        assert await exit_code(server, signal.SIGTERM) == 0, text_of(log)
    finally:
        await stop(server)
