"""Bot strategies and a bot client that plays over a real WebSocket."""
