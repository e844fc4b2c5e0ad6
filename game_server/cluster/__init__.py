"""Many processes as one server, on Redis: a shared queue, players owned by one process at
a time, frames forwarded between processes, and matches that outlive their host.

Turned on by ``--redis``; without it nothing here is imported. May import the core and
``redis``, never the network shell or storage: ``cli/assembly.py`` plugs it into the game
service through the core's ports (``Matchmaker``, ``Locator``, ``Forwarder``, ``Journal``).
``docs/cluster.md`` is the design in prose.
"""
