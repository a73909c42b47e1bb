"""Issue 11, "quiet and honest": `up` honours the project's `.env` for host and ports, the sandbox has
its own Dagster instance and data dir and names the variables it overrides, its partitions start
where its data does, the log is free of Beta/Preview warnings and DEBUG lines, and the payment events'
metadata says what the ingest knows."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from integration_sync.cli import build_parser, resolve_addresses, sandbox_overrides
from integration_sync.sandbox.env import SANDBOX_DAYS, START_DATE_VARS, sandbox_env
from integration_sync_tests.test_run_stack import free_port

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = ("ABCP_", "B24_", "UF_B24_", "KASPI_", "AMO_", "PLATFORM_WEBHOOK_", "DAGSTER_", "SANDBOX_", "WEBHOOK_")


def up_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["up", *argv])


def test_up_reads_host_and_ports_after_the_project_env_unless_given() -> None:
    environ = {"INTEGRATION_SYNC_HOST": "10.0.0.5", "DAGSTER_PORT": "3100", "SANDBOX_PORT": "8800"}
    environ["WEBHOOK_PORT"] = "8100"
    at = resolve_addresses(up_args("--project-dir", "elsewhere"), environ)
    assert (at.host, at.port, at.sandbox_port, at.webhook_port) == ("10.0.0.5", 3100, 8800, 8100)
    given = resolve_addresses(up_args("--port", "3200", "--host", "127.0.0.2"), environ)
    assert (given.host, given.port, given.sandbox_port) == ("127.0.0.2", 3200, 8800)
    default = resolve_addresses(up_args(), {})
    assert (default.host, default.port, default.sandbox_port, default.webhook_port) == ("127.0.0.1", 3000, 8787, 8001)
    with pytest.raises(SystemExit, match="SANDBOX_PORT must be a port number"):
        resolve_addresses(up_args(), {"SANDBOX_PORT": "http://x"})


def test_the_sandbox_names_what_it_overrides_never_the_values() -> None:
    configured = {"AMO_PIPELINE_ID": "424242", "KASPI_START_DATE": "2024-01-01", "DEFAULT_COUNTRY": "KZ", "OTHER": "1"}
    sandbox = sandbox_env("http://127.0.0.1:8787", days=SANDBOX_DAYS)
    overridden = sandbox_overrides(configured, sandbox)
    assert overridden == ["AMO_PIPELINE_ID", "KASPI_START_DATE"]  # DEFAULT_COUNTRY is the same value


def test_the_sandboxs_partitions_start_on_the_first_day_of_its_data() -> None:
    first = (datetime.now(UTC) - timedelta(days=SANDBOX_DAYS + 1)).date().isoformat()
    env = sandbox_env("http://127.0.0.1:8787", days=SANDBOX_DAYS)
    assert {name: env[name] for name in START_DATE_VARS} == dict.fromkeys(START_DATE_VARS, first)
    # every flow's partitions read one of these variables
    used = {
        match
        for path in (ROOT / "integration_sync" / "defs").glob("*/assets.py")
        for match in re.findall(r'daily\([^)]*"(\w+_START_DATE)"', path.read_text())
    }
    assert used and used <= set(START_DATE_VARS), used - set(START_DATE_VARS)


@pytest.mark.slow
def test_up_with_a_project_dir_serves_the_sandbox_on_its_env_port_with_its_own_instance(tmp_path: Path) -> None:
    """Issue 11: the ports of `--project-dir`'s .env were ignored (read before it was loaded), and the
    sandbox shared `dagster_home` with the real accounts. Stopped as soon as the sandbox answers."""
    project = tmp_path / "project"
    (project / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", project / "dagster_home" / "dagster.yaml")
    shutil.copy(ROOT / "workspace.yaml", project / "workspace.yaml")
    sandbox_port = free_port()
    (project / ".env").write_text(
        f"SANDBOX_PORT={sandbox_port}\nDAGSTER_PORT={free_port()}\nWEBHOOK_PORT={free_port()}\n"
        "AMO_PIPELINE_ID=424242\nKASPI_START_DATE=2024-01-01\n"
    )
    stale = project / "data" / "sandbox" / "dagster_home" / "history" / "old-runs.db"
    stale.parent.mkdir(parents=True)
    stale.write_text("a previous sandbox's runs")
    cwd = tmp_path / "elsewhere"  # no .env here: only the project dir's can set the ports
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(CREDENTIALS)}
    env.pop("INTEGRATION_SYNC_DATA_DIR", None)
    binary = str(Path(sys.executable).parent / "integration-sync")
    proc = subprocess.Popen(
        [binary, "up", "--project-dir", str(project)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while not any(line.strip().startswith("payments_amocrm:") for line in lines):  # the doctor's summary
            assert time.monotonic() < deadline and proc.poll() is None, lines
            lines.append(proc.stdout.readline().decode())
        assert httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/stats", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # the doctor's requests reached the sandbox, and its log shows none of them (ABCP's password hash)
    assert any(line.strip() == "abcp_bitrix24: sandbox" for line in lines), lines
    assert not [line for line in lines if "userpsw" in line or "/rest/1/" in line]
    said = next(line for line in lines if "replace these" in line)
    assert "AMO_PIPELINE_ID" in said and "KASPI_START_DATE" in said and "424242" not in "".join(lines)
    home = project / "data" / "sandbox" / "dagster_home"
    assert (home / "dagster.yaml").read_text() == (project / "dagster_home" / "dagster.yaml").read_text()
    assert (home / "history").is_dir() and not stale.exists()  # a new sandbox starts with a new instance
    assert [p.name for p in (project / "dagster_home").iterdir()] == ["dagster.yaml"]  # the real one untouched


def test_payment_events_metadata_says_what_the_ingest_knows(sandbox_env: dict[str, str], data_dir: Path) -> None:
    """Issue 11: `amount_applied=0` right after every payment landed (the ingest runs before the push).
    The ingest reports the statuses at load and the amount received; the push, what it applied."""
    from integration_sync.defs.payments_amocrm.assets import payment_events
    from integration_sync.webhooks.inbox import Inbox
    from integration_sync_tests.payments_amocrm.flow import events_metadata, flow_env, payment, run_flow, today

    env = flow_env(sandbox_env, data_dir)
    inbox = Inbox(env["WEBHOOK_INBOX_PATH"])
    for key in ("quiet-1", "quiet-2"):
        inbox.insert("platform_payment", f"payment:{key}", today().isoformat(), json.dumps(payment(key)))
    metadata = events_metadata(run_flow(env, first_day=today(), selection=[payment_events]))
    assert metadata["status_pending"] == 2 and metadata["status_success"] == 0
    assert metadata["amount_received"] == 2 * 10000.0  # the seed's sample payment: 10 000 each
    assert "amount_applied" not in metadata


def test_runs_log_at_info_on_the_console(tmp_path: Path) -> None:
    """The project's instance (and so the sandbox's copy) sets runs' console logger to INFO: no DEBUG
    step events in `make run`'s output."""
    import dagster as dg
    from dagster._loggers import default_system_loggers

    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))  # not entered: see kaspi_amocrm/test_sensor.py
    try:
        ((_, config),) = default_system_loggers(instance)
    finally:
        instance.dispose()
    assert config["log_level"] == "INFO"


def test_loading_the_code_location_prints_no_beta_warning() -> None:
    """Dagster's own repository build raised a BetaWarning (`execution_type`) per asset check loaded
    from a defs folder, in every code server and run; the entry point silences that one."""
    code = "from integration_sync.definitions import defs; defs.get_repository_def().asset_checks_defs_by_key"
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "BetaWarning" not in done.stderr and "PreviewWarning" not in done.stderr, done.stderr[-2000:]
