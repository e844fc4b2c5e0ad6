"""The network shell: aiohttp's application, the WebSocket handler and both dialects
(protocol v1 and the 2016 Socket.IO one), one writer per connection, heartbeats, the
ticker that wakes the core, the HTTP API and the browser page.

Thin by design: it turns sockets into core events and the core's sends into frames. May
import the core, ``protocol``, ``config``, ``wechat`` and ``ops``, never storage or the
cluster (``cli/assembly.py`` hands those in as ports), and it keeps every shortcut around
aiohttp's private parts in ``fastpath.py``, behind one version check.
"""
