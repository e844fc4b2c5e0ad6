"""The game itself, without I/O: matches, the queue, players, rooms, house bots, scoring.

Pure and sans-I/O: every part takes events (a message from a session, a timer firing, a
store's answer) with the time passed in through ``Context``, and answers with what to send
and when it next needs waking. It may import ``protocol`` and the standard library's pure
parts, never aiohttp, asyncio, sockets, a database or Redis, nor any other package of the
server: the shell, storage and the cluster reach it through the ports in ``ports.py``.
Tests drive it with a fake clock (tests/core).
"""
