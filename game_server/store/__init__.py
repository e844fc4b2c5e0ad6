"""Storage: players, finished matches and the leaderboard in SQLite, written by one thread.

The event loop never waits on the database: writes are queued to a writer thread that
batches them, reads come back as futures. May import the core (its ``Storage`` port and
records), never the network shell or the cluster; ``cli/assembly.py``
opens the store and hands it to the game service.
"""
