"""`integration-sync amocrm webhook register|status|unregister`, the doctor's hook check and the
`up` start-up step, against the seller's amoCRM emulator over real HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync import cli
from integration_sync.connectors.errors import ApiError, ConfigError
from integration_sync.defs.amocrm_sheets import webhook_register as hooks
from integration_sync.lib.preflight import environment
from integration_sync.ops.inspect import amocrm_account
from integration_sync.sandbox.env import sandbox_env
from integration_sync.sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hook12-Secret_path-0123456789"


@pytest.fixture()
def env(fresh_small_sandbox: SandboxServer, tmp_path: Path) -> dict[str, str]:
    """The flow's sandbox settings with a fresh sandbox, data dir and our own secret."""
    values = sandbox_env(fresh_small_sandbox.base_url, "http://127.0.0.1:9")
    values.update(SHEETS_WEBHOOK_SECRET=SECRET, INTEGRATION_SYNC_DATA_DIR=str(tmp_path / "data"))
    return values


@pytest.fixture()
def shell(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """`env` as the CLI's process environment (no `.env` in the project dir)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return env


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(["amocrm", "webhook", *argv, "--project-dir", os.getcwd()])
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out + err


def posts(env: dict[str, str]) -> int:
    """Subscriptions the seller's account has received since the reset."""
    stats = httpx.get(f"{env['SANDBOX_BASE_URL']}/_sandbox/stats", timeout=10).json()["amocrm-seller"]
    return int(stats["by_method"].get("POST webhooks", 0))


def listed(env: dict[str, str]) -> list[Any]:
    with environment(env):
        resource = amocrm_account("amocrm_sheets")
    with resource.client() as client:
        return client.list_webhooks()


def test_register_is_idempotent_and_status_unregister_follow(
    shell: dict[str, str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    url = hooks.hook_url(shell)
    assert url == f"http://127.0.0.1:9/webhook/amocrm/{SECRET}"
    assert run(capsys, "status") == (
        1,
        "missing: http://127.0.0.1:9/webhook/amocrm/**** — "
        + (
            "the amoCRM webhook http://127.0.0.1:9/webhook/amocrm/**** is not registered: "
            "run `integration-sync amocrm webhook register`\n"
        ),
    )
    code, out = run(capsys, "register", "--dry-run")
    assert code == 0 and out.startswith("would register http://127.0.0.1:9/webhook/amocrm/****")
    assert listed(shell) == [] and posts(shell) == 0
    code, out = run(capsys, "register")
    assert (code, out) == (0, "registered: http://127.0.0.1:9/webhook/amocrm/**** (status_lead)\n")
    assert posts(shell) == 1
    code, out = run(capsys, "register")
    assert (code, out) == (0, "already registered: http://127.0.0.1:9/webhook/amocrm/**** (status_lead)\n")
    assert posts(shell) == 1  # no write the second time
    [hook] = listed(shell)
    assert (hook.destination, hook.settings, hook.disabled) == (url, ["status_lead"], False)
    assert run(capsys, "status")[0] == 0 and hooks.hook_problems(shell) == []
    assert run(capsys, "unregister") == (0, "unregistered: http://127.0.0.1:9/webhook/amocrm/****\n")
    assert listed(shell) == []
    [problem] = hooks.hook_problems(shell)
    assert "is not registered: run `integration-sync amocrm webhook register`" in problem and SECRET not in problem
    assert "filter%5Bdestination%5D=" in caplog.text and SECRET not in caplog.text  # httpx logs every URL


class FailingReceiver:
    """An endpoint answering every hook 500, as a broken receiver would."""

    def __init__(self) -> None:
        self.count = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:  # the receiver is `self` here
                handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
                self.count += 1
                handler.send_response(500)
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_hook_amocrm_disabled_is_named_by_doctor_and_register_enables_it(env: dict[str, str]) -> None:
    failing = FailingReceiver()
    try:
        env["SHEETS_WEBHOOK_BASE_URL"] = failing.url
        assert hooks.on_start(env) == [
            f"amocrm_sheets: amoCRM webhook registered: {failing.url}/webhook/amocrm/**** (status_lead)"
        ]
        control = f"{env['SANDBOX_BASE_URL']}/_sandbox/amocrm-seller"
        lead = httpx.get(f"{control}/leads", timeout=10).json()[0]
        with httpx.Client(timeout=10) as http:
            for i in range(101):  # amoCRM disables a hook after more than 100 bad answers in 2 h
                moved = http.post(f"{control}/leads/{lead['id']}/status", json={"status_id": (142, 143)[i % 2]})
                assert moved.status_code == 200, moved.text
        deadline = time.monotonic() + 20
        while not listed(env)[0].disabled:
            assert time.monotonic() < deadline, f"not disabled after {failing.count} bad answers"
            time.sleep(0.2)
        [problem] = hooks.hook_problems(env)
        assert problem == (
            f"the amoCRM webhook {failing.url}/webhook/amocrm/**** was disabled by amoCRM (it answered errors "
            "too often): run `integration-sync amocrm webhook register` again"
        )
        assert hooks.on_start(env)[0].endswith(
            "registered: " + failing.url + "/webhook/amocrm/**** (status_lead) (it was disabled)"
        )
        [hook] = listed(env)
        assert (hook.settings, hook.disabled) == (["status_lead"], False)
        assert hooks.hook_problems(env) == []
    finally:
        failing.close()


def test_a_hook_with_other_events_is_named_and_narrowed(env: dict[str, str]) -> None:
    url = hooks.hook_url(env)
    with environment(env):
        resource = amocrm_account("amocrm_sheets")
    with resource.client() as client:
        client.subscribe_webhook(url, ["status_lead", "update_lead"])
        client.subscribe_webhook("https://other.example.com/hook", ["add_lead"])  # someone else's: left alone
        with pytest.raises(ApiError, match=r"settings\.0"):  # amoCRM takes known event names only
            client.subscribe_webhook(url, ["lead_status"])
    [problem] = hooks.hook_problems(env)
    assert "also subscribes to update_lead (only status_lead is needed)" in problem
    assert hooks.on_start(env)[0].endswith("(status_lead) (it had other events)")
    assert {h.destination: h.settings for h in listed(env)} == {
        url: ["status_lead"],
        "https://other.example.com/hook": ["add_lead"],
    }


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"SHEETS_WEBHOOK_SECRET": "short-secret"}, "SHEETS_WEBHOOK_SECRET"),
        ({"SHEETS_WEBHOOK_SECRET": "a secret with spaces in it"}, "SHEETS_WEBHOOK_SECRET"),
        ({"SHEETS_WEBHOOK_SECRET": "0123456789abcdef/../x"}, "SHEETS_WEBHOOK_SECRET"),
        ({"SHEETS_WEBHOOK_SECRET": ""}, "SHEETS_WEBHOOK_SECRET"),
        ({"SHEETS_WEBHOOK_BASE_URL": ""}, "SHEETS_WEBHOOK_BASE_URL"),
        ({"SHEETS_WEBHOOK_BASE_URL": "sync.example.com"}, "SHEETS_WEBHOOK_BASE_URL"),
    ],
)
def test_a_bad_hook_setting_is_a_config_error_naming_the_variable(changes: dict[str, str], named: str) -> None:
    env = {"SHEETS_WEBHOOK_BASE_URL": "https://sync.example.com/", "SHEETS_WEBHOOK_SECRET": SECRET, **changes}
    with pytest.raises(ConfigError) as caught:
        hooks.hook_url(env)
    assert named in caught.value.message
    assert not any(value and value in caught.value.message for value in changes.values())
    assert hooks.hook_problems(env) == [caught.value.message]  # doctor: the same line, no request


def test_the_cli_refuses_a_bad_secret_without_printing_it(
    shell: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHEETS_WEBHOOK_SECRET", "tiny-secret")
    code, out = run(capsys, "register")
    assert code == 2 and "SHEETS_WEBHOOK_SECRET must be at least 16 characters" in out and "tiny-secret" not in out
    assert posts(shell) == 0


def test_doctor_says_one_line_when_the_account_cannot_be_reached(env: dict[str, str]) -> None:
    env["SHEETS_AMO_BASE_URL"] = "http://127.0.0.1:9/amocrm-seller"  # nothing listens there
    [problem] = hooks.hook_problems(env)
    assert problem.startswith("SHEETS_AMO_BASE_URL: amoCRM (webhooks) did not answer as expected")
    assert "Traceback" not in problem and env["SHEETS_AMO_ACCESS_TOKEN"] not in problem and SECRET not in problem


def test_doctor_says_a_token_without_admin_rights_cannot_see_the_hooks(env: dict[str, str]) -> None:
    """`/api/v4/webhooks` is for account administrators: another user's token gets a JSON 403 (not
    the HTML block page, which would stop every process)."""
    forbidden = {"title": "Forbidden", "type": "https://httpstatus.es/403", "status": 403, "detail": "Access denied"}
    spec = {"amocrm-seller": {"error_burst": {"count": 1, "status": 403, "body": forbidden}}}
    assert httpx.post(f"{env['SANDBOX_BASE_URL']}/_sandbox/faults", json=spec, timeout=10).status_code == 200
    assert hooks.hook_problems(env) == [
        "SHEETS_AMO_CLIENT_ID/SHEETS_AMO_CLIENT_SECRET and the stored OAuth pair: "
        "amoCRM refused to list its webhooks (403): they need an administrator's token"
    ]


def test_on_start_registers_only_on_the_sandboxs_seller_account(env: dict[str, str]) -> None:
    assert hooks.on_start(env) == [
        "amocrm_sheets: amoCRM webhook registered: http://127.0.0.1:9/webhook/amocrm/**** (status_lead)"
    ]
    assert hooks.on_start(env) == [
        "amocrm_sheets: amoCRM webhook already registered: http://127.0.0.1:9/webhook/amocrm/**** (status_lead)"
    ]
    real = {**env, "SHEETS_AMO_BASE_URL": "https://seller.amocrm.ru"}
    before = posts(env)
    assert hooks.on_start(real) == [] and hooks.on_start({**env, "SANDBOX_BASE_URL": ""}) == []
    assert posts(env) == before
    broken = {**env, "SHEETS_WEBHOOK_SECRET": "nope"}
    assert hooks.on_start(broken) == [
        "amocrm_sheets: the amoCRM webhook was not registered: amocrm_sheets: SHEETS_WEBHOOK_SECRET must be at "
        "least 16 characters of A-Z, a-z, 0-9, _ and -"
    ]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_up_registers_the_hook_on_the_sandbox_before_the_doctor_runs(tmp_path: Path) -> None:
    """`make run`: `up` calls each flow's `on_start` once the sandbox and the receiver answer. Stopped
    as soon as the doctor's summary is printed (Dagster itself is not waited for)."""

    project = tmp_path / "project"
    (project / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", project / "dagster_home" / "dagster.yaml")
    shutil.copy(ROOT / "workspace.yaml", project / "workspace.yaml")
    sandbox_port, webhook_port = free_port(), free_port()
    (project / ".env").write_text(
        f"SANDBOX_PORT={sandbox_port}\nDAGSTER_PORT={free_port()}\nWEBHOOK_PORT={webhook_port}\n"
    )
    prefixes = ("ABCP_", "B24_", "UF_B24_", "KASPI_", "AMO_", "PLATFORM_WEBHOOK_", "SHEETS_", "GOOGLE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.pop("INTEGRATION_SYNC_DATA_DIR", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "integration-sync"), "up", "--project-dir", str(project)],
        env=env,
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while not any(line.startswith("doctor (") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, lines
            lines.append(proc.stdout.readline().decode())
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    receiver = f"http://127.0.0.1:{webhook_port}/webhook/amocrm/****"
    assert f"amocrm_sheets: amoCRM webhook registered: {receiver} (status_lead)\n" in lines, lines
    assert "sandbox-amocrm-hook-path-secret" not in "".join(lines)
