"""Records cross process boundaries as JSON (a cluster hands players to each other and
keeps a finished match in Redis until it is stored): the round trip loses nothing."""

from __future__ import annotations

import orjson

from game_server.core.records import (
    MatchRecord,
    PlayerRecord,
    PlayerResult,
    RoundRow,
    SeatRow,
)
from game_server.core.scoring import PlayerStats


def test_a_match_record_comes_back_from_json_equal_with_its_types() -> None:
    ann = PlayerRecord(
        "p_ann", "Ann", 1.5, 2.5, avatar="https://a/x.png", openid="o1", stats=PlayerStats(3, 1)
    )
    record = MatchRecord(
        id="m_1",
        seats=(SeatRow("p_ann", "Ann", False), SeatRow("b_1", "Robot", True)),
        winner="p_ann",
        reason="rounds",
        best_of=3,
        started_at=10.0,
        ended_at=12.25,
        rounds=(RoundRow(1, ("rock", "scissors"), "win"), RoundRow(2, ("paper", None), "win")),
        players=(ann,),
        results=(PlayerResult("p_ann", "win", 1),),
    )
    again = MatchRecord.from_json(orjson.loads(orjson.dumps(record.to_json())))
    assert again == record
    assert isinstance(again.seats, tuple)
    assert isinstance(again.rounds[0].choices, tuple)
    assert PlayerRecord.from_json(orjson.loads(orjson.dumps(ann.to_json()))) == ann
