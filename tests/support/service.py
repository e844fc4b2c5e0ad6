"""Driving the game service in-process: a client is a session, its outlet and a voice."""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from game_server.core.service import GameService
from game_server.core.sessions import Session
from protocol import Error, Hi, Start
from tests.support.fakes import RecordingOutlet


@attrs.define
class Client:
    service: GameService
    session: Session
    outlet: RecordingOutlet

    def say(self, **message: Any) -> None:
        self.service.receive(self.session, orjson.dumps(message))

    def hello(self, **fields: Any) -> Hi:
        self.say(type="hello", **fields)
        return self.outlet.last(Hi)

    def choose(self, choice: str, *, final: bool = True, **fields: Any) -> None:
        start = self.outlet.last(Start)
        self.say(
            type="choice",
            match_id=fields.pop("match_id", start.match_id),
            round=fields.pop("round", start.round),
            choice=choice,
            final=final,
            **fields,
        )

    def error(self) -> Error:
        return self.outlet.last(Error)


def connect(service: GameService) -> Client:
    outlet = RecordingOutlet()
    return Client(service, service.connect(outlet), outlet)
