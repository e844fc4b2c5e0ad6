"""Real-time rock-paper-scissors game server: sans-I/O core plus a thin aiohttp shell."""

__version__ = "0.1.0"
