"""Reading `.env`: values already in the environment win (a deployment's own settings are never overridden)."""

from __future__ import annotations

from pathlib import Path


def load_dotenv(path: Path) -> None:
    if path.exists():
        from dotenv import load_dotenv as _load

        _load(path, override=False)
