"""The JSON HTTP endpoints beside the game socket: WeChat login, leaderboard, profiles.

Errors are ``{"error": {"code", "message"}}`` with a fitting status (protocol §9).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import orjson
import structlog
from aiohttp import web

from game_server.core.ladder import Board, Period, shown
from game_server.core.ports import StoreUnavailable
from game_server.core.rating import aged
from game_server.core.records import PlayerRecord
from game_server.net.appkeys import CONFIG, SERVICE, STORE, WECHAT
from game_server.wechat.errors import LoginError
from game_server.wechat.login import login as wechat_login
from game_server.wechat.login import parse_login_body
from protocol import fields

log = structlog.get_logger("game_server.http")

LOGIN_PATH = "/applet/login"
LOGIN_BODY_MAX = 256 * 1024
LEADERBOARD_PATH = "/applet/leaderboard"
PLAYER_PATH = "/applet/players/{player_id}"
LEADERBOARD_DEFAULT = 10
LEADERBOARD_MAX = 100
RECENT_MATCHES = 20
RATING_HISTORY = 50
PLAYER_ID_MAX = 64
# Digits only, and few of them: str.isdigit() passes "²" (int() then fails) and int() of a
# 5,000-digit string trips Python's digit limit, both a 500.
_LIMIT = re.compile(r"[0-9]{1,4}")
# What ids look like ("p_" and hex); anything else is not a player, never a query.
_PLAYER_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{PLAYER_ID_MAX}}}")
RETRY_AFTER = {"Retry-After": "1"}


def json_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


def player_json(record: PlayerRecord) -> dict[str, Any]:
    """The public view of a player: never the WeChat openid. The rating deviation is as
    of now: days without a rated match widen it."""
    rating = aged(record.rating, time.time())
    return {
        "id": record.id,
        "name": record.name,
        "avatar": record.avatar,
        **attrs.asdict(record.stats),
        "rating": rating.shown,
        "rating_deviation": round(rating.deviation),
    }


def _live(request: web.Request, record: PlayerRecord) -> PlayerRecord:
    """Storage lags the game by a write; prefer the live totals of a player in memory."""
    live = request.app[SERVICE].live_record(record.id)
    return record if live is None else attrs.evolve(live, last_seen=record.last_seen)


_BOARDS = {board.value: board for board in Board}
_PERIODS = {period.value: period for period in Period}


async def leaderboard(request: web.Request) -> web.Response:
    query = request.query
    text = query.get("limit", str(LEADERBOARD_DEFAULT))
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= LEADERBOARD_MAX:
        return json_error(
            400, "bad_request", f"limit must be a whole number from 1 to {LEADERBOARD_MAX}"
        )
    board = _BOARDS.get(query.get("by", Board.SCORE.value))
    if board is None:
        return json_error(400, "bad_request", "by must be score or rating")
    period = _PERIODS.get(query.get("period", Period.ALL.value))
    if period is None:
        return json_error(400, "bad_request", "period must be all, week or day")
    if board is Board.RATING and period is not Period.ALL:
        return json_error(400, "bad_request", "the rating board has period=all only")
    around = query.get("around")
    if around is not None and not _PLAYER_ID.fullmatch(around):
        return json_error(400, "bad_request", "around must be a player id")
    store = request.app[STORE]
    rows = await store.standings(board, period, int(text), around)
    if rows is None:
        # Not on this board (unknown, never played, nothing won today): the top, and
        # "around": null says so. A client shows the board either way.
        around = None
        rows = await store.standings(board, period, int(text))
    assert rows is not None
    out = []
    for row in rows:
        entry = {"rank": row.rank, **player_json(row.player)}
        if row.points is not None:
            entry["points"] = row.points  # won in this day or week
        out.append(entry)
    body: dict[str, Any] = {"by": board.value, "period": period.value, "players": out}
    if query.get("around") is not None:
        body["around"] = around
    return web.json_response(body)


def _shown(rating: float | None) -> int | None:
    return None if rating is None else shown(rating)


def _match_json(player_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """A stored match from one player's side (the table keeps seat 1 and seat 2)."""
    first = row["player1"] == player_id
    mine, theirs = ("1", "2") if first else ("2", "1")
    winner = row["winner"]
    outcome = "draw" if winner is None else ("win" if winner == player_id else "lose")
    flip = {"win": "lose", "lose": "win", "draw": "draw"}
    return {
        "id": row["id"],
        "opponent": {
            "id": row["player" + theirs],
            "name": row["name" + theirs],
            "bot": bool(row["bot" + theirs]),
        },
        "outcome": outcome,
        "reason": row["reason"],
        # None for a match stored before ratings.
        "rating_before": _shown(row["rating" + mine + "_before"]),
        "rating_after": _shown(row["rating" + mine + "_after"]),
        "best_of": row["best_of"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "rounds": [
            {
                "round": r["round"],
                "you": r["choice" + mine],
                "opponent": r["choice" + theirs],
                "outcome": r["outcome"] if first else flip[r["outcome"]],
            }
            for r in row["rounds"]
        ],
    }


async def player_profile(request: web.Request) -> web.Response:
    player_id = request.match_info["player_id"]
    if not _PLAYER_ID.fullmatch(player_id):
        return json_error(404, "not_found", "no such player")
    store = request.app[STORE]
    record = await store.get_player(player_id)
    if record is None:
        return json_error(404, "not_found", "no such player")
    record = _live(request, record)
    matches = await store.recent_matches(player_id, RECENT_MATCHES)
    history = await store.rating_history(player_id, RATING_HISTORY)
    rank = await store.rank_by_score(player_id)
    return web.json_response(
        {
            "player": {
                **player_json(record),
                "created_at": record.created_at,
                "last_seen": record.last_seen,
                "online": request.app[SERVICE].is_online(player_id),
                "rank": rank,  # by score, all time; None until it has played
                # Oldest first, to draw left to right.
                "rating_history": [
                    {"match_id": match_id, "ended_at": ended_at, "rating": shown(rating)}
                    for match_id, ended_at, rating in reversed(history)
                ],
            },
            "matches": [_match_json(player_id, row) for row in matches],
        }
    )


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None if it is longer than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _clean(parse: Any, value: str | None) -> str | None:
    """WeChat's nickname or avatar URL if it passes the same checks as ``hello``'s."""
    if value is None:
        return None
    try:
        cleaned: str = parse(value)
    except ValueError:
        return None
    return cleaned


async def login(request: web.Request) -> web.Response:
    client = request.app.get(WECHAT)
    if client is None:
        return json_error(
            404, "login_unavailable", "this server has no WeChat app configured; play as a guest"
        )
    try:
        # Within the request deadline: a body sent a byte at a time holds no handler.
        async with asyncio.timeout(request.app[CONFIG].request_timeout):
            raw = await read_body(request, LOGIN_BODY_MAX)
    except TimeoutError:
        return json_error(408, "timeout", "the body did not arrive in time")
    if raw is None:
        return json_error(
            413, "too_large", f"the body must be at most {LOGIN_BODY_MAX // 1024} KiB"
        )
    try:
        # JSON is UTF-8 whatever the Content-Type's charset says (an unknown one made
        # request.json() raise LookupError); orjson also refuses nesting past 1,024 levels
        # where json.loads hit a RecursionError.
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json_error(400, "bad_request", "the body must be a JSON object")
    try:
        outcome = await wechat_login(client, parse_login_body(body))
    except LoginError as exc:
        log.info("login_refused", code=exc.code, status=exc.status)
        return web.json_response(exc.to_json(), status=exc.status, headers=exc.headers())
    openid = outcome.session.openid
    store, service = request.app[STORE], request.app[SERVICE]
    stored = await store.find_by_openid(openid)
    if stored is None:
        # A new WeChat user, perhaps logging in through two processes at once: the first
        # to store the openid makes the player, and the other one takes that player.
        fresh = service.new_player_record(openid=openid, unionid=outcome.session.unionid)
        stored = await store.claim_openid(fresh)
    record, token = service.login(
        openid,
        stored,
        name=_clean(fields.player_name, outcome.profile.get("name")),
        avatar=_clean(fields.avatar_url, outcome.profile.get("avatar")),
        unionid=outcome.session.unionid,
    )
    return web.json_response(
        {"token": token, "expires_in": int(service.token_ttl), "player": player_json(record)}
    )


Handler = Callable[[web.Request], Awaitable[web.Response]]


def storage_errors(handler: Handler) -> Handler:
    """A storage failure is the server's, for now: 503 with Retry-After, never a bare 500."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except StoreUnavailable as exc:
            log.warning("http_store_unavailable", path=request.path, error=str(exc))
            return json_error(
                503, "unavailable", "storage is failing; try again in a moment", **RETRY_AFTER
            )

    return guarded


def add_routes(app: web.Application) -> None:
    app.router.add_post(LOGIN_PATH, storage_errors(login))
    app.router.add_get(LEADERBOARD_PATH, storage_errors(leaderboard))
    app.router.add_get(PLAYER_PATH, storage_errors(player_profile))
