"""The browser client (``GET /``) in a real headless Chromium, against a real server process.

Debian's ``chromium`` is driven through Playwright with ``executable_path`` (no browser
download). Each page gets its own browser context (its own localStorage, so its own
player) on a phone-sized viewport. Any console error fails the test: a Content-Security-
Policy violation, for one, shows up there. Skipped only when /usr/bin/chromium is absent
(failed then under ``.ci/run``, which installs it: ``tests/support/processes.require_program``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    WebSocketRoute,
    async_playwright,
    expect,
)

from game_server.core.rating import BOT_RATINGS, Rating
from game_server.core.records import PlayerRecord
from game_server.core.scoring import PlayerStats
from game_server.store.schema import PROFILE_ROW, migrate, player_params
from tests.support.processes import FAST_GAME, ServerProcess, launch, require_program
from tests.support.waiting import until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Instant house bots and no pause between rounds; rounds end as soon as both hands are
# in, so long rounds cost nothing and leave room for a slow machine. No bot sits down
# for a player waiting alone: two pages must meet each other. Windows widen fast, so two
# pages whose ratings a match set apart meet again at once.
GAME = (*FAST_GAME, "--round-seconds", "10", "--bot-after", "30", "--match-widen", "5000")
PHONE: ViewportSize = {"width": 390, "height": 844}
TIMEOUT_MS = 8000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    process = await launch("--port", "0", "--drain-seconds", "1", *GAME)
    try:
        yield process
    finally:
        await process.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = require_program("chromium", ".ci/run installs it", path=CHROMIUM)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


class Client:
    """One player's page, with its console errors, every URL it requested or opened a
    WebSocket to, the dialogs it tried to show, and locators by ``data-testid``."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.context = context
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda ws: self.requests.append(ws.url))

        async def dismiss(dialog: Dialog) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("dialog", dismiss)

    def foreign_requests(self, origin: str) -> list[str]:
        """Requested URLs not on ``origin`` (http://host:port; ws:// is the same origin
        for the game socket), other than data: and blob: URLs."""
        http = urlsplit(origin)
        own = {(http.scheme, http.netloc), ("ws", http.netloc), ("wss", http.netloc)}
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob")
            and (urlsplit(url).scheme, urlsplit(url).netloc) not in own
        ]

    def by(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    @property
    def screen(self) -> Locator:
        return self.by("app")

    async def player_id(self) -> str:
        player_id = await self.by("connection").get_attribute("data-player-id")
        assert player_id, "no player id on the page"
        return player_id

    async def history(self, testid: str = "final-history") -> list[dict[str, str]]:
        """The rounds the page lists: round, both hands and the outcome of each."""
        items = self.by(testid).get_by_test_id("history-round")
        rounds = []
        for item in await items.all():
            rounds.append(
                {
                    key: await item.get_attribute(f"data-{key}") or ""
                    for key in ("round", "you", "opponent", "outcome")
                }
            )
        return rounds

    async def next_round(self, number: int) -> bool:
        """Wait until round ``number`` is open (True) or the match is over (False)."""
        game = self.page.locator(
            f'[data-testid="game"][data-round="{number}"][data-phase="choosing"]'
        )
        over = self.page.locator('[data-testid="app"][data-screen="over"]')
        await expect(game.or_(over).filter(visible=True)).to_have_count(1)
        return await over.count() == 0


OpenPage = Callable[..., Awaitable[Client]]


@pytest.fixture
async def open_page(browser: Browser, server: ServerProcess) -> AsyncIterator[OpenPage]:
    clients: list[Client] = []

    async def open_page(*, init_script: str | None = None, route: Wire | None = None) -> Client:
        context = await browser.new_context(viewport=PHONE, device_scale_factor=2, has_touch=True)
        if init_script is not None:
            await context.add_init_script(init_script)
        page = await context.new_page()
        client = Client(context, page)
        clients.append(client)
        if route is not None:
            await page.route_web_socket(re.compile(r".*/applet/websocket$"), route.handle)
        response = await page.goto(f"{server.http}/")
        assert response is not None
        assert response.status == 200
        headers = response.headers
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert "connect-src 'self' ws: wss:" in csp
        return client

    yield open_page
    for client in clients:
        await client.context.close()
    for client in clients:
        assert client.errors == [], client.errors
        assert client.dialogs == [], client.dialogs
        # Nothing is fetched from anywhere else: the page is self-contained.
        assert f"{server.http}/" in client.requests, client.requests
        assert client.foreign_requests(server.http) == [], client.requests


class Wire:
    """Playwright's WebSocket routing between a page and the server.

    It records what the page sends, can cut the live connection (the page sees the
    socket close; the server sees its peer go), and can refuse new connections for a
    while, as a dead network would. With ``unavailable`` set, that many hellos with a
    token are answered as a server whose storage fails answers them (protocol §5:
    ``error {code: "unavailable"}``) instead of reaching the server; ``hellos`` records
    when each hello was sent (``time.monotonic()``) and on which connection.
    """

    def __init__(self, *, unavailable: int = 0) -> None:
        self.routes: list[WebSocketRoute] = []
        self.sent: list[dict[str, Any]] = []
        self.refuse = False
        self.refused = 0
        self.unavailable = unavailable
        self.hellos: list[tuple[float, int, dict[str, Any]]] = []

    async def handle(self, route: WebSocketRoute) -> None:
        if self.refuse:
            self.refused += 1
            await route.close(code=1013, reason="refused by the test")
            return
        server = route.connect_to_server()
        connection = len(self.routes)

        def forward(message: str | bytes) -> None:
            if isinstance(message, str):
                frame = json.loads(message)
                self.sent.append(frame)
                if frame["type"] == "hello":
                    self.hellos.append((time.monotonic(), connection, frame))
                    if "token" in frame and self.unavailable > 0:
                        self.unavailable -= 1
                        error = {
                            "type": "error",
                            "code": "unavailable",
                            "message": "your player cannot be loaded right now; "
                            "say hello again in a moment",
                            "ref": frame["id"],
                        }
                        route.send(json.dumps(error))
                        return
            server.send(message)

        route.on_message(forward)
        self.routes.append(route)

    async def cut(self) -> None:
        await self.routes[-1].close(code=4000, reason="cut by the test")


async def join(client: Client, name: str, *, bot: bool = False) -> None:
    await client.by("name-input").fill(name)
    await client.by("join-bot" if bot else "join").click()


async def play(client: Client, number: int, hand: str, *, key: bool = False) -> None:
    game = client.by("game")
    await expect(game).to_have_attribute("data-round", str(number))
    await expect(game).to_have_attribute("data-phase", "choosing")
    if key:
        await client.page.keyboard.press(hand[0].upper())
    else:
        await client.by(f"choice-{hand}").click()


async def expect_round(client: Client, number: int, you: str, opponent: str, outcome: str) -> None:
    last = client.by("round-result")
    await expect(last).to_have_attribute("data-round", str(number))
    await expect(last).to_have_attribute("data-you", you)
    await expect(last).to_have_attribute("data-opponent", opponent)
    await expect(last).to_have_attribute("data-outcome", outcome)
    # The hands in words as well as icons: readable without an emoji font.
    await expect(last).to_contain_text(f"You: {you or 'nothing'}")
    await expect(last).to_contain_text(f"Opponent: {opponent or 'nothing'}")


async def fits_the_phone(client: Client, *, hands: bool) -> None:
    """Nothing wider than the phone's screen (no sideways scrolling); with ``hands``, the
    three hand buttons are wholly on the screen."""
    scroll_width, inner_width, inner_height = await client.page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth, window.innerHeight]"
    )
    assert (inner_width, inner_height) == (PHONE["width"], PHONE["height"])
    assert scroll_width <= inner_width
    if not hands:
        return
    for hand in ("rock", "paper", "scissors"):
        button = client.by(f"choice-{hand}")
        await expect(button).to_be_visible()
        box = await button.bounding_box()  # relative to the viewport, as scrolled
        assert box is not None, hand
        assert box["x"] >= 0, (hand, box)
        assert box["x"] + box["width"] <= inner_width, (hand, box)
        assert box["y"] >= 0, (hand, box)
        assert box["y"] + box["height"] <= inner_height, (hand, box)


async def profile(server: ServerProcess, player_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.http}/applet/players/{player_id}") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        player: dict[str, Any] = body["player"]
        return player


async def test_two_pages_play_a_match_and_again(open_page: OpenPage, server: ServerProcess) -> None:
    ann, bob = await open_page(), await open_page()
    # A new visitor has no token yet: it connects when it first presses a button.
    await expect(ann.by("connection")).to_have_attribute("data-state", "offline")

    await join(ann, "Ann")
    await expect(ann.screen).to_have_attribute("data-screen", "waiting")
    await expect(ann.by("connection")).to_have_attribute("data-state", "online")
    await join(bob, "Bob")
    for me, them in ((ann, "Bob"), (bob, "Ann")):
        await expect(me.screen).to_have_attribute("data-screen", "game")
        await expect(me.by("opponent-name")).to_have_text(them)
        await expect(me.by("opponent-bot")).to_be_hidden()
        await expect(me.by("round")).to_have_text("Round 1 of 3")
        await expect(me.by("countdown")).to_have_text(re.compile(r"^([1-9]|10)$"))
    match_id = await ann.by("game").get_attribute("data-match-id")
    assert match_id
    assert match_id == await bob.by("game").get_attribute("data-match-id")

    # Round 1: Ann makes a face and chooses; Bob sees both, but not which hand.
    await ann.page.get_by_label("Send a surprised face").click()
    await expect(bob.by("opponent-face")).to_be_visible()
    await expect(bob.by("opponent-face")).to_have_attribute("data-face", "2")
    await play(ann, 1, "rock")
    await expect(ann.by("choice-rock")).to_have_attribute("aria-pressed", "true")
    await expect(bob.by("opponent-status")).to_have_attribute("data-status", "chosen")
    await expect(bob.by("opponent-status")).to_contain_text("Ann has chosen")
    await play(bob, 1, "scissors")
    await expect_round(ann, 1, "rock", "scissors", "win")
    await expect_round(bob, 1, "scissors", "rock", "lose")
    await expect(ann.by("score-you")).to_have_text("1")
    await expect(bob.by("score-opponent")).to_have_text("1")
    await expect(ann.by("announcer")).to_contain_text("You win the round")

    # Round 2 ends the match 2-0 for Ann.
    await play(bob, 2, "paper")
    await play(ann, 2, "scissors")
    for me, winner, you, opponent, total in ((ann, "you", 2, 0, 1), (bob, "opponent", 0, 2, 0)):
        over = me.by("match-result")
        await expect(me.screen).to_have_attribute("data-screen", "over")
        await expect(over).to_have_attribute("data-winner", winner)
        await expect(over).to_have_attribute("data-reason", "rounds")
        await expect(me.by("final-score-you")).to_have_text(str(you))
        await expect(me.by("final-score-opponent")).to_have_text(str(opponent))
        await expect(me.by("total-score")).to_have_text(str(total))
        await expect(me.by("win-streak")).to_have_text(str(total))
        # The rematch (same opponent) has the focus; "play again" (the queue) is beside it.
        await expect(me.by("rematch")).to_be_focused()
        await expect(me.by("play-again")).to_be_visible()
    assert await ann.history() == [
        {"round": "1", "you": "rock", "opponent": "scissors", "outcome": "win"},
        {"round": "2", "you": "scissors", "opponent": "paper", "outcome": "win"},
    ]
    assert await bob.history() == [
        {"round": "1", "you": "scissors", "opponent": "rock", "outcome": "lose"},
        {"round": "2", "you": "paper", "opponent": "scissors", "outcome": "lose"},
    ]
    first_round = ann.by("final-history").get_by_test_id("history-round").first
    await expect(first_round).to_contain_text("rock · ✌️ scissors")
    await expect(ann.by("announcer")).to_contain_text("You win the match!")
    ARTIFACTS.mkdir(exist_ok=True)
    await ann.page.screenshot(path=str(ARTIFACTS / "browser-match-over.png"), full_page=True)

    # The page shows what the server recorded.
    ann_profile = await profile(server, await ann.player_id())
    assert (ann_profile["name"], ann_profile["total_score"], ann_profile["wins"]) == ("Ann", 1, 1)
    bob_profile = await profile(server, await bob.player_id())
    assert (bob_profile["name"], bob_profile["losses"]) == ("Bob", 1)

    # Play again: a new match between the same two.
    await ann.by("play-again").click()
    await expect(ann.screen).to_have_attribute("data-screen", "waiting")
    await bob.by("play-again").click()
    for me in (ann, bob):
        await expect(me.screen).to_have_attribute("data-screen", "game")
        await expect(me.by("game")).to_have_attribute("data-round", "1")
        await expect(me.by("score-you")).to_have_text("0")
        await expect(me.by("round-result")).to_be_hidden()
    again = await ann.by("game").get_attribute("data-match-id")
    assert again
    assert again != match_id


async def test_a_page_plays_a_bot_with_the_keyboard(
    open_page: OpenPage, server: ServerProcess
) -> None:
    cy = await open_page()
    await fits_the_phone(cy, hands=False)
    await join(cy, "Cy", bot=True)
    await expect(cy.screen).to_have_attribute("data-screen", "game")
    await fits_the_phone(cy, hands=True)
    await expect(cy.by("opponent-bot")).to_be_visible()
    await expect(cy.by("opponent-name")).not_to_be_empty()

    # Keys R and S, a click on paper between them; a best-of-3 ends in 2 or 3 rounds.
    played = []
    for number, hand, key in ((1, "rock", True), (2, "paper", False), (3, "scissors", True)):
        if not await cy.next_round(number):
            break
        await play(cy, number, hand, key=key)
        played.append(hand)
    await expect(cy.screen).to_have_attribute("data-screen", "over")
    await fits_the_phone(cy, hands=False)
    assert len(played) >= 2

    rounds = await cy.history()
    assert [r["round"] for r in rounds] == [str(n) for n in range(1, len(played) + 1)]
    assert [r["you"] for r in rounds] == played
    beats = {"rock": "scissors", "paper": "rock", "scissors": "paper"}
    for r in rounds:
        assert r["opponent"] in beats, r
        expected = (
            "draw"
            if r["you"] == r["opponent"]
            else "win"
            if beats[r["you"]] == r["opponent"]
            else "lose"
        )
        assert r["outcome"] == expected, r
    wins = sum(r["outcome"] == "win" for r in rounds)
    losses = sum(r["outcome"] == "lose" for r in rounds)
    await expect(cy.by("final-score-you")).to_have_text(str(wins))
    await expect(cy.by("final-score-opponent")).to_have_text(str(losses))
    winner = "you" if wins > losses else "opponent" if losses > wins else "draw"
    await expect(cy.by("match-result")).to_have_attribute("data-winner", winner)
    points = 1 if winner == "you" else 0
    await expect(cy.by("total-score")).to_have_text(str(points))
    await expect(cy.by("win-streak")).to_have_text(str(points))
    player_id = await cy.player_id()
    player = await profile(server, player_id)
    assert (player["total_score"], player["win_streak"]) == (points, points)

    # A new name goes with a new hello, on a new socket: same player, renamed.
    await cy.by("to-lobby").click()
    await expect(cy.screen).to_have_attribute("data-screen", "lobby")
    await join(cy, "Cyd", bot=True)
    await expect(cy.screen).to_have_attribute("data-screen", "game")
    await expect(cy.by("you-name")).to_have_text("Cyd")
    await expect(cy.by("connection")).to_have_attribute("data-state", "online")
    assert await cy.player_id() == player_id
    assert (await profile(server, player_id))["name"] == "Cyd"


async def test_a_page_reconnects_resumes_and_keeps_its_player(open_page: OpenPage) -> None:
    wire = Wire()
    ann = await open_page(route=wire)
    bob = await open_page()
    # Ann's clock is Playwright's, so the 20 s keepalive can be fast-forwarded later.
    await ann.page.clock.install()
    await join(ann, "Ann")
    await expect(ann.screen).to_have_attribute("data-screen", "waiting")
    await join(bob, "Bob")
    await expect(ann.screen).to_have_attribute("data-screen", "game")
    player_id = await ann.player_id()
    token = await ann.page.evaluate("localStorage.getItem('rps.token')")
    assert token

    await play(ann, 1, "rock")
    await expect(bob.by("opponent-status")).to_have_attribute("data-status", "chosen")

    # The network dies: the socket closes and reconnecting fails for a while.
    wire.refuse = True
    await wire.cut()
    await expect(ann.by("connection")).to_have_attribute("data-state", "reconnecting")
    await expect(bob.by("opponent-status")).to_have_attribute("data-status", "away")
    await expect(bob.by("opponent-status")).to_contain_text("Ann left")
    down = "a reconnect attempt while the network is down"
    await until(lambda: wire.refused > 0, TIMEOUT_MS / 1000, what=down)
    await expect(ann.by("connection")).to_have_attribute("data-state", "reconnecting")

    # It comes back: same player, same match, round and hand (from resume).
    wire.refuse = False
    await expect(ann.by("connection")).to_have_attribute("data-state", "online")
    assert await ann.player_id() == player_id
    hellos = [m for m in wire.sent if m["type"] == "hello"]
    assert len(hellos) == 2
    assert hellos[1]["token"] == token
    await expect(ann.screen).to_have_attribute("data-screen", "game")
    await expect(ann.by("game")).to_have_attribute("data-round", "1")
    await expect(ann.by("game")).to_have_attribute("data-phase", "chosen")
    await expect(ann.by("choice-rock")).to_have_attribute("aria-pressed", "true")
    await expect(ann.by("choice-paper")).to_be_disabled()
    await expect(bob.by("opponent-status")).to_have_attribute("data-status", "chosen")

    # The hand chosen before the drop counts.
    await play(bob, 1, "scissors")
    await expect_round(ann, 1, "rock", "scissors", "win")
    await expect_round(bob, 1, "scissors", "rock", "lose")
    await play(ann, 2, "paper")
    await play(bob, 2, "rock")
    await expect(ann.by("match-result")).to_have_attribute("data-winner", "you")
    await expect(bob.by("match-result")).to_have_attribute("data-winner", "opponent")

    # The app-level keepalive: a ping every 20 s, answered with a pong.
    def pings() -> int:
        return sum(m["type"] == "ping" and "id" not in m for m in wire.sent)

    before = pings()
    await ann.page.clock.fast_forward(20_500)
    await until(lambda: pings() > before, TIMEOUT_MS / 1000, what="a keepalive ping after 20 s")
    await expect(ann.by("connection")).to_contain_text(re.compile(r"Online\s*\d+ ms"))
    await expect(ann.by("connection")).to_have_attribute("data-state", "online")


async def guest_token(server: ServerProcess) -> tuple[str, str]:
    """A new guest's token and player id, from a hello of our own."""
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
        await ws.send_json({"type": "hello", "name": "Dee"})
        hi = await ws.receive_json(timeout=5)
        assert hi["type"] == "hi", hi
        return hi["token"], hi["player_id"]


async def test_unavailable_keeps_the_token_and_says_hello_again(
    open_page: OpenPage, server: ServerProcess
) -> None:
    """The server cannot load the player just now (its storage fails): the page keeps
    its token, shows it is waiting, and says the same hello again, later and later."""
    token, player_id = await guest_token(server)
    wire = Wire(unavailable=2)
    dee = await open_page(init_script=f"localStorage.setItem('rps.token', '{token}')", route=wire)
    connection = dee.by("connection")
    await expect(connection).to_have_attribute("data-state", "busy")
    await expect(connection).to_contain_text("Server busy, retrying")
    assert await dee.page.evaluate("localStorage.getItem('rps.token')") == token
    # A button pressed meanwhile waits for the hi.
    await dee.by("join-bot").click()
    await expect(dee.screen).to_have_attribute("data-screen", "waiting")

    await expect(connection).to_have_attribute("data-state", "online")
    assert await dee.player_id() == player_id
    await expect(dee.screen).to_have_attribute("data-screen", "game")
    await expect(dee.by("opponent-bot")).to_be_visible()
    # Three hellos, all with the token, on the one connection: never a guest, no reconnect.
    assert [(n, m.get("token")) for _, n, m in wire.hellos] == [(0, token)] * 3
    assert len(wire.routes) == 1
    assert [m["type"] for m in wire.sent if m["type"] in ("hello", "join")] == [
        "hello",
        "hello",
        "hello",
        "join",
    ]
    # 1 s, then 2 s, +-20 %: growing (timers never fire early).
    first, second, third = (at for at, _, _ in wire.hellos)
    gaps = (second - first, third - second)
    assert gaps[0] >= 0.75, gaps
    assert gaps[1] >= 1.55, gaps
    assert gaps[1] > gaps[0], gaps
    # Nothing else to tell the player: no toast with the server's message, no "expired".
    assert await dee.by("toast").is_hidden()
    await expect(dee.by("notice")).to_be_hidden()


async def test_a_name_with_markup_is_shown_as_text(open_page: OpenPage) -> None:
    """A player's name is text wherever a page shows it: never parsed as HTML."""
    evil = "<img src=x onerror=alert(1)>"
    ann, bob = await open_page(), await open_page()
    await join(ann, evil)
    await expect(ann.screen).to_have_attribute("data-screen", "waiting")
    await join(bob, "Bob")
    await expect(bob.screen).to_have_attribute("data-screen", "game")
    await expect(bob.by("opponent-name")).to_have_text(evil)
    await expect(ann.by("you-name")).to_have_text(evil)
    await play(ann, 1, "rock")
    await play(bob, 1, "paper")
    await play(ann, 2, "rock")
    await play(bob, 2, "paper")
    await expect(bob.screen).to_have_attribute("data-screen", "over")
    await expect(bob.page.locator("#over-vs")).to_have_text(f"against {evil}")
    for client in (ann, bob):
        # No element came out of the name (the page has no <img> of its own), no
        # handler ran (a dialog would be recorded), nothing fetched "x".
        assert await client.page.locator("img").count() == 0
        assert evil in await client.page.evaluate("document.body.textContent")
        assert client.dialogs == []
        assert not [url for url in client.requests if urlsplit(url).path == "/x"]


async def test_a_forged_token_is_forgotten_for_a_new_guest(open_page: OpenPage) -> None:
    forged = "v1.p_000000000000.9999999999.forged"
    page = await open_page(init_script=f"localStorage.setItem('rps.token', '{forged}')")
    # A stored token connects at once; the server refuses it and the page starts over.
    await expect(page.by("connection")).to_have_attribute("data-state", "online")
    await expect(page.by("notice")).to_contain_text("session expired")
    # Nothing else to tell the player: the errors for the refused hello's followers are
    # expected (a toast stays up for 3 s, so it would still show).
    assert await page.by("toast").is_hidden()
    player_id = await page.player_id()
    assert player_id != "p_000000000000"  # ids are opaque (protocol §8): compare only
    token = await page.page.evaluate("localStorage.getItem('rps.token')")
    assert token
    assert token != forged
    await expect(page.by("name-input")).to_have_value(re.compile(r"^Player \d{4}$"))

    await page.by("join-bot").click()
    await expect(page.screen).to_have_attribute("data-screen", "game")
    await expect(page.by("notice")).to_be_hidden()


async def test_ratings_beside_names_and_a_leaderboard_with_the_own_row_in_view(
    browser: Browser, tmp_path: Path
) -> None:
    """A database with 60 players ahead of a newcomer: the page shows ratings beside both
    names, the change after the match, and the leaderboard's tabs, each around the player,
    its own row highlighted and scrolled into view."""
    db = tmp_path / "rps.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn)
    for n in range(60):
        params = player_params(
            PlayerRecord(
                id=f"p_seed{n:02d}",
                name=f"Seed {n:02d}",
                created_at=1.0,
                last_seen=2.0,
                stats=PlayerStats(total_score=100 - n, wins=10),
                rating=Rating(2000.0 - 5 * n, 60.0),
            )
        )
        conn.execute(
            f"INSERT INTO players ({', '.join(PROFILE_ROW)}) "
            f"VALUES ({', '.join('?' * len(PROFILE_ROW))})",
            tuple(params[column] for column in PROFILE_ROW),
        )
    conn.close()
    server = await launch("--db", str(db), "--bot-strategy", "random", *GAME)
    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, has_touch=True)
    try:
        page = await context.new_page()
        dee = Client(context, page)
        await page.goto(f"{server.http}/")
        await join(dee, "Dee", bot=True)
        await expect(dee.screen).to_have_attribute("data-screen", "game")
        await expect(dee.by("you-rating")).to_have_text("📈 1500")
        await expect(dee.by("opponent-rating")).to_have_text(f"📈 {BOT_RATINGS['random'].shown}")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(
            path=str(ARTIFACTS / "browser-game-ratings.png"), animations="disabled"
        )
        for number in (1, 2, 3):
            if not await dee.next_round(number):
                break
            await play(dee, number, "rock")
        await expect(dee.screen).to_have_attribute("data-screen", "over")
        rating = int(await dee.by("rating").inner_text())
        change = await dee.by("rating-change").inner_text()
        sign = {"+": 1, "\u2212": -1, "\u00b1": 0}[change[0]]  # plus, minus, plus-minus
        assert rating == 1500 + sign * int(change[1:]), (rating, change)
        expected = {1: "up", -1: "down", 0: "none"}[sign]
        await expect(dee.by("rating-change")).to_have_attribute("data-sign", expected)
        await page.screenshot(
            path=str(ARTIFACTS / "browser-rating-change.png"), full_page=True, animations="disabled"
        )

        await dee.by("to-lobby").click()
        await expect(dee.by("me-rating")).to_have_text(f"📈 {rating}")
        await dee.by("open-board").click()
        await expect(dee.screen).to_have_attribute("data-screen", "board")
        board = dee.by("board-list")
        mine = board.locator('[data-testid="board-row"][aria-current="true"]')
        # All time by score: the 60 seeded players are ahead (the last has 41 points, a win
        # is worth 1), so Dee is 61st.
        await dee.by("board-tab-all").click()
        await expect(board).to_have_attribute("data-tab", "all")
        await expect(mine).to_have_count(1)
        await expect(mine).to_have_attribute("data-rank", "61")
        await expect(mine).to_be_in_viewport()
        await expect(mine).to_contain_text("Dee")
        await expect(mine).to_contain_text(f"📈 {rating}")
        ranks = [int(r) for r in await board.get_by_test_id("board-row").evaluate_all(
            "rows => rows.map(row => row.dataset.rank)"
        )]  # fmt: skip
        assert ranks == sorted(ranks)
        assert ranks[0] > 1  # the page is around Dee, not the top
        await dee.by("board-tab-rating").click()
        await expect(dee.by("board-tab-rating")).to_have_attribute("aria-selected", "true")
        await expect(board).to_have_attribute("data-loading", "false")
        await expect(mine).to_have_count(1)
        await expect(mine).to_be_in_viewport()
        await expect(mine).to_have_attribute("data-rank", "61")  # 2000 .. 1705, then Dee
        await page.screenshot(path=str(ARTIFACTS / "browser-leaderboard.png"), full_page=False)
        # Today: on the board if Dee won, else the top of it (nobody else won today).
        await dee.by("board-tab-day").click()
        await expect(board).to_have_attribute("data-tab", "day")
        await expect(board).to_have_attribute("data-loading", "false")
        if sign > 0:
            await expect(mine).to_have_attribute("data-rank", "1")
        else:
            await expect(board).to_contain_text("Nobody on this board yet.")
        await fits_the_phone(dee, hands=False)
        await dee.by("board-back").click()
        await expect(dee.screen).to_have_attribute("data-screen", "lobby")
        assert dee.errors == [], dee.errors
    finally:
        await context.close()
        await server.stop()


# ---------------------------------------------------------------- friends and languages

INDEX = Path(__file__).resolve().parents[2] / "game_server" / "net" / "static" / "index.html"


def test_every_string_is_in_both_languages() -> None:
    """The page's two tables have the same keys, and every key the page names (in its
    markup and its code) is in them."""
    page = INDEX.read_text(encoding="utf-8")
    tables = {}
    for lang in ("zh", "en"):
        block = re.search(rf"\n    {lang}: {{\n(.*?)\n    }},", page, re.S)
        assert block, lang
        tables[lang] = set(re.findall(r"^      (\w+): ", block.group(1), re.M))
    assert tables["zh"] == tables["en"]
    assert len(tables["en"]) > 100
    named = set(re.findall(r'data-i18n(?:-aria|-placeholder)?="(\w+)"', page))
    named |= set(re.findall(r"\bt\('(\w+)'", page))
    named |= set(re.findall(r": '((?:reason|declined|room|note|conn)[A-Z]\w*)'", page))
    assert named - tables["en"] == set()


async def test_a_friend_opens_the_link_plays_and_both_ask_for_a_rematch(
    open_page: OpenPage, server: ServerProcess
) -> None:
    ann = await open_page()
    await ann.by("name-input").fill("Ann")
    await ann.by("invite").click()
    await expect(ann.screen).to_have_attribute("data-screen", "room")
    await expect(ann.by("room")).to_have_attribute("data-code", re.compile(r"^[2-9A-HJKMNP-Z]{6}$"))
    code = await ann.by("room").get_attribute("data-code")
    assert code is not None
    await expect(ann.by("room-code")).to_have_text(code)
    await expect(ann.by("room-link")).to_have_value(f"{server.http}/?room={code}")
    bob = await open_page()  # a new guest, who follows the link Ann sent
    await bob.page.goto(f"{server.http}/?room={code}")
    for me in (ann, bob):
        await expect(me.screen).to_have_attribute("data-screen", "game")
        await expect(me.by("game")).to_have_attribute("data-round", "1")
    await expect(bob.by("opponent-name")).to_have_text("Ann")
    bob_name = (await bob.by("you-name").inner_text()).strip()
    await expect(ann.by("opponent-name")).to_have_text(bob_name)
    # The code works once: the friend's address bar no longer carries it.
    assert "room=" not in bob.page.url
    first = await ann.by("game").get_attribute("data-match-id")
    for number in (1, 2):
        await play(ann, number, "rock")
        await play(bob, number, "scissors")
    for me in (ann, bob):
        await expect(me.screen).to_have_attribute("data-screen", "over")
        await expect(me.by("rematch")).to_have_attribute("data-state", "ready")
    await ann.by("rematch").click()
    await expect(ann.by("rematch")).to_have_attribute("data-state", "asked")
    await expect(ann.by("rematch-status")).to_be_visible()
    await expect(bob.by("rematch")).to_have_attribute("data-state", "offered")
    await expect(bob.by("rematch")).to_have_text("🔁 Accept rematch")
    await expect(bob.by("rematch-status")).to_contain_text("wants a rematch")
    await bob.by("rematch").click()
    for me in (ann, bob):
        await expect(me.screen).to_have_attribute("data-screen", "game")
        await expect(me.by("game")).to_have_attribute("data-round", "1")
        await expect(me.by("game")).not_to_have_attribute("data-match-id", first or "")


async def test_a_wrong_code_in_a_link_says_so_and_leaves_the_lobby_usable(
    open_page: OpenPage, server: ServerProcess
) -> None:
    page = await open_page()
    await page.page.goto(f"{server.http}/?room=ZZZZZZ")
    await expect(page.screen).to_have_attribute("data-screen", "lobby")
    await expect(page.by("notice")).to_have_text("That room code is unknown or has expired.")
    await join(page, "Cy", bot=True)
    await expect(page.screen).to_have_attribute("data-screen", "game")


OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const bad = [];
  for (const el of document.querySelectorAll('header *, main *')) {
    if (!el.getClientRects().length) continue;  // hidden
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    const clips = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
    const what = el.id || el.dataset.testid || el.tagName;
    if (box.right > width + 1 || box.left < -1) bad.push(what);
    else if (!clips && el.children.length === 0 && el.scrollWidth > el.clientWidth + 1
             && style.display !== 'inline') bad.push(what + ' (text)');
  }
  if (document.documentElement.scrollWidth > width + 1) bad.push('page scrolls sideways');
  return bad;
}"""


@pytest.mark.parametrize(
    ("locale", "lang", "name", "join_text"),
    [
        ("zh-CN", "zh", "欧阳娜娜欧阳娜娜欧阳娜娜欧阳娜娜欧阳娜娜欧阳娜娜欧阳娜", "寻找对手"),
        ("en-US", "en", "Maximilian-Alexander Wolfeschlegelsteinhausenberger", "Find an opponent"),
    ],
)
async def test_each_language_holds_its_layout_with_long_names(
    browser: Browser, server: ServerProcess, locale: str, lang: str, name: str, join_text: str
) -> None:
    """The browser's language picks the page's (a switch changes it, and is remembered);
    every screen, with a 32-character name, keeps inside a phone's width. Screenshots in
    test-artifacts/ for a person to look at."""
    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, has_touch=True, locale=locale
    )
    try:
        page = await context.new_page()
        client = Client(context, page)
        await page.goto(f"{server.http}/")
        await expect(page.locator("html")).to_have_attribute("data-lang", lang)
        await expect(client.by("join")).to_have_text(join_text)
        ARTIFACTS.mkdir(exist_ok=True)

        async def snap(screen: str) -> None:
            await page.screenshot(
                path=str(ARTIFACTS / f"browser-{lang}-{screen}.png"),
                full_page=True,
                animations="disabled",
            )
            assert await page.evaluate(OVERFLOW) == [], screen

        await client.by("name-input").fill(name)
        await snap("lobby")
        await client.by("invite").click()
        await expect(client.by("room")).to_have_attribute("data-code", re.compile(".{6}"))
        await snap("room")
        await client.by("room-cancel").click()
        await expect(client.screen).to_have_attribute("data-screen", "lobby")
        await client.by("join-bot").click()
        await expect(client.screen).to_have_attribute("data-screen", "game")
        await snap("game")
        for number in (1, 2, 3):
            if not await client.next_round(number):
                break
            await play(client, number, "rock")
        await expect(client.screen).to_have_attribute("data-screen", "over")
        await snap("over")
        # The switch: the other language at once, and after a reload too.
        other = "en" if lang == "zh" else "zh"
        await client.by("language").click()
        await expect(page.locator("html")).to_have_attribute("data-lang", other)
        await expect(client.by("to-lobby")).to_have_text(
            "Back to the lobby" if other == "en" else "返回大厅"
        )
        await page.reload()
        await expect(page.locator("html")).to_have_attribute("data-lang", other)
        assert client.errors == []
    finally:
        await context.close()
