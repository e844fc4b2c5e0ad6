"""The JSON HTTP endpoints beside the game socket: leaderboard and player profiles.

Errors are ``{"error": {"code", "message"}}`` with a fitting status, like the login.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from game_server.appkeys import SERVICE, STORE
from game_server.records import PlayerRecord

LEADERBOARD_PATH = "/applet/leaderboard"
PLAYER_PATH = "/applet/players/{player_id}"
LEADERBOARD_DEFAULT = 10
LEADERBOARD_MAX = 100
RECENT_MATCHES = 20
PLAYER_ID_MAX = 64


def json_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


def player_json(record: PlayerRecord) -> dict[str, Any]:
    """The public view of a player: never the WeChat openid."""
    return {
        "id": record.id,
        "name": record.name,
        "avatar": record.avatar,
        "total_score": record.total_score,
        "win_streak": record.win_streak,
        "wins": record.wins,
        "losses": record.losses,
        "draws": record.draws,
    }


def _live(request: web.Request, record: PlayerRecord) -> PlayerRecord:
    """Storage lags the game by a write; prefer the live totals of a player in memory."""
    player = request.app[SERVICE].players.get(record.id)
    return record if player is None else player.record(record.last_seen)


async def leaderboard(request: web.Request) -> web.Response:
    text = request.query.get("limit", str(LEADERBOARD_DEFAULT))
    if not text.isdigit() or not 1 <= int(text) <= LEADERBOARD_MAX:
        return json_error(
            400, "bad_request", f"limit must be a whole number from 1 to {LEADERBOARD_MAX}"
        )
    records = await request.app[STORE].leaderboard(int(text))
    return web.json_response(
        {
            "players": [
                {"rank": rank, **player_json(record)} for rank, record in enumerate(records, 1)
            ]
        }
    )


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
    if len(player_id) > PLAYER_ID_MAX:
        return json_error(404, "not_found", "no such player")
    store = request.app[STORE]
    record = await store.get_player(player_id)
    if record is None:
        return json_error(404, "not_found", "no such player")
    record = _live(request, record)
    matches = await store.recent_matches(player_id, RECENT_MATCHES)
    service = request.app[SERVICE]
    live = service.players.get(player_id)
    return web.json_response(
        {
            "player": {
                **player_json(record),
                "created_at": record.created_at,
                "last_seen": record.last_seen,
                "online": live is not None and live.session is not None,
            },
            "matches": [_match_json(player_id, row) for row in matches],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(LEADERBOARD_PATH, leaderboard)
    app.router.add_get(PLAYER_PATH, player_profile)
