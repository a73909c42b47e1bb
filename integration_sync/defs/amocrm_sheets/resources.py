"""The amocrm_sheets flow's resources: its Google Sheet (through gspread, `connectors/sheets.py`) and
its settings. Its amoCRM account is the shared `amocrm_resource("SHEETS_")` (SHEETS_AMO_* over AMO_*).

`open_spreadsheet(env)` is what the CLI tools use; the Dagster resource wraps the same opener. Both
share one read and one write budget per Google user across processes (state files under data/state),
so a run, the poll sensor and an operator command never add up past Google's 60 + 60 per minute.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
import gspread

from integration_sync.connectors.errors import ConfigError
from integration_sync.connectors.http import HttpPolicy
from integration_sync.connectors.sheets import sheets_client, sheets_limiter
from integration_sync.defs.amocrm_sheets.settings import SheetsSettings
from integration_sync.defs.resources import data_dir, env_str

WRITES_KEPT = 50
SHEETS_POLICY = HttpPolicy(timeout=30.0, connect_timeout=10.0, max_attempts=5, backoff_base=2.0, backoff_max=40.0)


@dataclass(frozen=True)
class SheetAccess:
    """How to reach the sheet: the sandbox's API URL and token, or a service-account key file."""

    sheet_id: str
    service_account_file: str = ""
    api_url: str = ""
    token: str = ""
    state_dir: str = "data/state"
    max_attempts: int = SHEETS_POLICY.max_attempts

    @classmethod
    def from_env(cls, env: Mapping[str, str], state_dir: str | None = None) -> SheetAccess:
        return cls(
            sheet_id=(env.get("GOOGLE_SHEET_ID") or "").strip(),
            service_account_file=(env.get("GOOGLE_SERVICE_ACCOUNT_FILE") or "").strip(),
            api_url=(env.get("GOOGLE_SHEETS_API_URL") or "").strip(),
            token=(env.get("GOOGLE_SHEETS_TOKEN") or "").strip(),
            state_dir=state_dir or str(data_dir() / "state"),
        )

    def _user(self) -> str:
        """Who Google counts the quota for: the key file's path or the sandbox URL (hashed)."""
        who = self.api_url or os.path.abspath(self.service_account_file or "gsheet.json")
        return hashlib.sha256(who.encode()).hexdigest()[:12]

    def client(self) -> gspread.Client:
        if not self.sheet_id:
            raise ConfigError("sheets", "GOOGLE_SHEET_ID is not set")
        if not self.api_url:
            key = self.service_account_file or "gsheet.json"
            if not Path(key).is_file():
                raise ConfigError("sheets", f"GOOGLE_SERVICE_ACCOUNT_FILE: no key file at {key}")
        state = Path(self.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        user = self._user()
        policy = replace(SHEETS_POLICY, max_attempts=self.max_attempts)
        return sheets_client(
            self.service_account_file or "gsheet.json",
            base_url=self.api_url or None,
            token=self.token or None,
            limiter=sheets_limiter("read", state_path=str(state / f"sheets-{user}-read.json")),
            write_limiter=sheets_limiter("write", state_path=str(state / f"sheets-{user}-write.json")),
            policy=policy,
        )

    def _written_path(self) -> Path:
        sheet = hashlib.sha256(self.sheet_id.encode()).hexdigest()[:12]
        return Path(self.state_dir) / f"sheets-{sheet}-our-writes.json"

    def record_our_writes(self, before: str, after: str) -> None:
        """The sheet's fingerprint as our push read it and as its writes left it. The last pushes' pairs
        are kept (pushes of the flow never overlap: they share a pool), so the poll can follow a chain of
        our own writes from what it saw last to what it sees now."""
        path = self._written_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        chain = [*self._our_writes(), [before, after]][-WRITES_KEPT:]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(chain))
        tmp.replace(path)

    def _our_writes(self) -> list[list[str]]:
        try:
            data = json.loads(self._written_path().read_text())
        except (OSError, ValueError):
            return []
        return (
            [[str(p[0]), str(p[1])] for p in data if isinstance(p, list) and len(p) == 2]
            if isinstance(data, list)
            else []
        )

    def only_our_writes(self, seen: str | None, now: str) -> bool:
        """Whether the sheet went from `seen` (the poll's last fingerprint) to `now` through our own
        writes alone: each step of the way is a push's (before, after)."""
        if not seen:
            return False
        steps = dict(self._our_writes())
        at, hops = seen, 0
        while at != now and at in steps and hops <= WRITES_KEPT:
            at, hops = steps[at], hops + 1
        return at == now and hops > 0

    def spreadsheet(self) -> gspread.Spreadsheet:
        """The spreadsheet, opened by key (gspread reads its metadata: one read request)."""
        return self.client().open_by_key(self.sheet_id)


def open_spreadsheet(env: Mapping[str, str] | None = None) -> gspread.Spreadsheet:
    """The flow's spreadsheet as `.env` names it (for CLI tools)."""
    return SheetAccess.from_env(os.environ if env is None else env).spreadsheet()


class GoogleSheetResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The seller's Google Sheet: the sandbox's URL and token, or a service-account key file."""

    sheet_id: str
    service_account_file: str = ""
    api_url: str = ""
    token: str = ""
    state_dir: str = "data/state"

    def access(self) -> SheetAccess:
        return SheetAccess(self.sheet_id, self.service_account_file, self.api_url, self.token, self.state_dir)

    @contextmanager
    def client(self) -> Iterator[gspread.Client]:
        yield self.access().client()

    def settings(self) -> SheetsSettings:
        """The flow's rules, read from the environment when asked (a changed .env needs no reload)."""
        return SheetsSettings.from_env(os.environ)


def google_sheet_resource() -> GoogleSheetResource:
    def secret(name: str) -> str | dg.EnvVar:
        return dg.EnvVar(name) if env_str(name) else ""

    return GoogleSheetResource(
        sheet_id=env_str("GOOGLE_SHEET_ID"),
        service_account_file=env_str("GOOGLE_SERVICE_ACCOUNT_FILE"),
        api_url=env_str("GOOGLE_SHEETS_API_URL"),
        token=secret("GOOGLE_SHEETS_TOKEN"),
        state_dir=str(data_dir() / "state"),
    )
