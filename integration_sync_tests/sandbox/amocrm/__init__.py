"""The amoCRM API v4 emulator, exercised over real HTTP with plain httpx (never the connectors)."""
