"""The operator tools against the emulators: `inspect`, `amocrm authorize`, `trace`, the re-drive
config every push takes, and `ENVIRONMENT=dev|prod` (the submission through a running webserver is in
`test_run_stack.py`)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync import cli
from integration_sync.defs.resources import amocrm_resource
from integration_sync.lib.settings_files import apply_environment, load_dotenv
from integration_sync.sandbox import amocrm_schema as amo
from integration_sync.sandbox import bitrix24_schema as b24
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings
from integration_sync_tests.abcp_bitrix24 import flow as abcp
from integration_sync_tests.dagster_support import environment
from integration_sync_tests.payments_amocrm import flow as payments

AMO_VARS = ("AMO_", "KASPI_AMO_", "PAYMENTS_AMO_", "B24_", "ABCP_B24_", "ENVIRONMENT", "DEV_", "PROD_")


@pytest.fixture()
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No account variable of the developer's shell, no `.env`: each test sets what it uses."""
    for name in list(os.environ):
        if name.startswith(AMO_VARS):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- inspect --------------------------------------------------------------------------------------


def test_inspect_amocrm_shows_pipelines_fields_enums_catalogs_and_leads(
    sandbox_env: dict[str, str], data_dir: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with environment({**sandbox_env, "INTEGRATION_SYNC_DATA_DIR": str(data_dir)}):
        code, out, _ = run_cli(capsys, "inspect", "amocrm")
        assert code == 0
        pipeline_row = next(line for line in out.splitlines() if line.startswith(str(amo.AMO_PIPELINE_ID)))
        assert str(amo.AMO_STATUS_ID) in out and "Kaspi" in pipeline_row
        subjects = next(line for line in out.splitlines() if line.startswith(str(amo.AMO_LEAD_FIELD_SUBJECTS)))
        assert all(f"{enum_id}=" in subjects for enum_id in amo.AMO_SUBJECT_ENUMS.values())
        assert str(amo.AMO_CATALOG_ID) in out and str(amo.AMO_CATALOG_SKU_FIELD_ID) in out
        header = next(line for line in out.splitlines() if line.startswith("pipeline_id"))
        status_row = next(line for line in out.splitlines() if f"  {amo.AMO_STATUS_ID}  " in line)
        assert status_row.index(str(amo.AMO_STATUS_ID)) == header.index("status_id")  # aligned columns

        code, out, _ = run_cli(capsys, "inspect", "amocrm", "--json")
        report = json.loads(out)
    assert code == 0
    pipeline = next(p for p in report["pipelines"] if p["id"] == amo.AMO_PIPELINE_ID)
    assert amo.AMO_STATUS_ID in [s["id"] for s in pipeline["statuses"]]
    field = next(f for f in report["lead_fields"] if f["id"] == amo.AMO_LEAD_FIELD_SUBJECTS)
    assert {e["id"] for e in field["enums"]} == set(amo.AMO_SUBJECT_ENUMS.values())
    assert any(f["id"] == amo.AMO_CONTACT_ADDRESS_FIELD_ID for f in report["contact_fields"])
    catalog = next(c for c in report["catalogs"] if c["id"] == amo.AMO_CATALOG_ID)
    assert amo.AMO_CATALOG_PRICE_FIELD_ID in [f["id"] for f in catalog["fields"]]
    assert 0 < len(report["sample_leads"]) <= 5


def test_inspect_flow_reads_that_flows_account(
    sandbox_env: dict[str, str], data_dir: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--flow kaspi_amocrm` reads KASPI_AMO_*; the shared account (unset here) is named when asked for."""
    own = {
        "KASPI_AMO_BASE_URL": sandbox_env["AMO_BASE_URL"],
        "KASPI_AMO_LONG_LIVED_TOKEN": amo.AMO_LONG_LIVED_TOKEN,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
    }
    with environment(own):
        code, out, _ = run_cli(capsys, "inspect", "amocrm", "--flow", "kaspi_amocrm", "--json")
        assert code == 0 and json.loads(out)["pipelines"]
        code, _, err = run_cli(capsys, "inspect", "amocrm")
    assert code == 2 and "AMO_BASE_URL is not set" in err


def test_inspect_bitrix24_shows_categories_stages_and_deal_fields(
    sandbox_env: dict[str, str], data_dir: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with environment({**sandbox_env, "INTEGRATION_SYNC_DATA_DIR": str(data_dir)}):
        code, out, _ = run_cli(capsys, "inspect", "bitrix24", "--flow", "abcp_bitrix24")
        assert code == 0
        assert any(
            line.split()[:1] == [str(b24.USERS_CATEGORY_ID)] and b24.USERS_STAGE_NEW in line
            for line in out.splitlines()
        )
        assert any(line.startswith(b24.UF_ABCP_USER_ID) for line in out.splitlines())
        code, out, _ = run_cli(capsys, "inspect", "bitrix24", "--json")
    report = json.loads(out)
    users = next(c for c in report["categories"] if c["id"] == b24.USERS_CATEGORY_ID)
    assert b24.USERS_STAGE_NEW in [s["status_id"] for s in users["stages"]]
    default = next(c for c in report["categories"] if c["id"] == 0)
    assert "NEW" in [s["status_id"] for s in default["stages"]]
    assert {b24.UF_ABCP_USER_ID, b24.UF_ABCP_INN, b24.UF_ABCP_SALDO} <= {f["field_name"] for f in report["deal_fields"]}


# -- amocrm authorize -----------------------------------------------------------------------------


@pytest.fixture()
def oauth_env(sandbox_env: dict[str, str], data_dir: Path, clean: Path) -> Iterator[dict[str, str]]:
    """The shared account in OAuth mode with no pair yet: only an authorization can give it one."""
    env = {
        **sandbox_env,
        "INTEGRATION_SYNC_DATA_DIR": str(data_dir),
        "AMO_ACCESS_TOKEN": "",
        "AMO_REFRESH_TOKEN": "",
        "AMO_LONG_LIVED_TOKEN": "",
    }
    with environment(env):
        yield env


def exchanges(control: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = control.get("/_sandbox/amocrm/tokens").json()["exchanges"]
    return rows


def account_works() -> int:
    with amocrm_resource("").process_config_and_initialize().client() as client:
        return len(client.list_pipelines())


def redirect(state: str, code: str = amo.AMO_AUTH_CODE) -> str:
    host = httpx.URL(os.environ["AMO_BASE_URL"]).netloc.decode()
    return f"{amo.AMO_REDIRECT_URI}?code={code}&state={state}&referer={host}&platform=1"


class Browser:
    """The operator: reads the printed authorization URL, consents, pastes the redirect URL back."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.printed = ""

    def readline(self) -> str:
        self.printed = self.capsys.readouterr().out
        url = httpx.URL(next(w for w in self.printed.split() if w.startswith("https://www.amocrm.ru/oauth")))
        assert url.params["client_id"] == amo.AMO_CLIENT_ID and url.params["mode"] == "post_message"
        return redirect(url.params["state"]) + "\n"


def test_authorize_with_the_redirect_url_stores_the_pair_the_flows_use(
    oauth_env: dict[str, str],
    control: httpx.Client,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(Exception, match="no OAuth tokens stored"):
        account_works()
    browser = Browser(capsys)
    monkeypatch.setattr("sys.stdin", browser)
    code, out, err = run_cli(capsys, "amocrm", "authorize")
    assert code == 0, err
    assert "authorized: tokens stored" in out and "sandbox-amo-access" not in browser.printed + out
    assert [(e["grant_type"], e["ok"]) for e in exchanges(control)] == [("authorization_code", True)]
    assert account_works() > 0  # AmoCrmResource.client() reads the stored pair


def test_authorize_refuses_a_url_whose_state_is_not_ours(
    oauth_env: dict[str, str], control: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "amocrm", "authorize", "--state", "ours", "--redirect-url", redirect("theirs"))
    assert code == 2 and "state does not match" in err
    code, _, err = run_cli(capsys, "amocrm", "authorize", "--redirect-url", redirect("ours"))
    assert code == 2 and "needs --state" in err
    assert exchanges(control) == []  # the code was never sent
    code, _, err = run_cli(capsys, "amocrm", "authorize", "--state", "ours", "--redirect-url", redirect("ours"))
    assert code == 0, err


def test_authorize_with_a_bare_code_and_a_refused_code(
    oauth_env: dict[str, str], control: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "amocrm", "authorize", "--code", "not-the-code")
    assert code == 2 and "amoCRM refused" in err and "not-the-code" not in err
    code, _, err = run_cli(capsys, "amocrm", "authorize", "--code", amo.AMO_AUTH_CODE)
    assert code == 0, err
    assert account_works() > 0


# -- trace ----------------------------------------------------------------------------------------


def test_trace_of_a_synced_abcp_user(
    sandbox_env: dict[str, str], data_dir: Path, control: httpx.Client, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = abcp.flow_env(sandbox_env, data_dir)
    abcp.run_flow(env, first_day=abcp.today() - timedelta(days=4), last_day=abcp.today())
    with abcp.warehouse(env).connect() as conn:
        key = str(conn.execute("SELECT source_key FROM sync_state WHERE status = 'synced' LIMIT 1").fetchone()[0])  # type: ignore[index]
    with environment(env):
        code, out, _ = run_cli(capsys, "trace", "abcp_bitrix24", key, "--json")
        assert code == 0
        story = json.loads(out)
        code, text, _ = run_cli(capsys, "trace", "abcp_bitrix24", key)
    snapshots = story["source"]["abcp_users"] + story["source"]["abcp_user_changes"]
    assert snapshots and {str(s["raw"]["userId"]) for s in snapshots} == {key}
    (state,) = story["sync_state"]
    assert state["status"] == "synced" and state["attempts"] == 0 and state["pushed_payload"]
    deal_id = next(t["target_id"] for t in story["target_ids"] if t["entity"] == "deal")
    deal = next(d for d in abcp.entities(control, "deals") if str(d["ID"]) == deal_id)
    assert str(deal[b24.UF_ABCP_USER_ID]) == key
    assert [(line["operation"], line["status"]) for line in story["sync_log"]] == [("create", "succeeded")]
    assert code == 0 and f"abcp_bitrix24 {key}" in text and "status: synced" in text and deal_id in text


def test_trace_of_a_failed_payment_while_a_run_holds_the_warehouse(
    sandbox_env: dict[str, str], data_dir: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = payments.flow_env(sandbox_env, data_dir, CREATE_IF_NOT_FOUND="false")
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        payments.deliver(server.base_url, payments.payment("nf-1", user={"telegram_id": "1", "phone": "+79990001111"}))
    payments.run_flow(env)
    store = payments.warehouse(env)
    held = threading.Event()

    def writer() -> None:  # a run's short transaction: trace waits it out instead of failing
        with store.transaction() as conn:
            conn.execute("SELECT 1")
            held.set()
            time.sleep(0.5)

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait(5)
    with environment(env):
        code, out, err = run_cli(capsys, "trace", "payments_amocrm", "nf-1", "--json")
    thread.join()
    assert code == 0, err
    story = json.loads(out)
    assert story["source"]["payment_events"]["payload"]["course_order"]["payment_id"] == "nf-1"
    (state,) = story["sync_state"]
    assert state["status"] == "rejected" and state["attempts"] == 1
    assert state["last_error"].startswith("contact_not_found")
    assert story["sync_log"][-1]["status"] == "rejected"
    assert story["target_ids"] == []


def test_trace_of_a_kaspi_order_not_pushed_yet(
    sandbox_env: dict[str, str], data_dir: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from integration_sync.defs.kaspi_amocrm.assets import kaspi_orders
    from integration_sync_tests.kaspi_amocrm import flow as kaspi

    env = kaspi.flow_env(sandbox_env, data_dir)
    kaspi.run_flow(env, days=0, selection=[kaspi_orders])
    with payments.warehouse(env).connect() as conn:  # any flow's helper opens the same warehouse
        key = str(conn.execute("SELECT order_code FROM kaspi_order_entries LIMIT 1").fetchone()[0])  # type: ignore[index]
    with environment(env):
        code, out, _ = run_cli(capsys, "trace", "kaspi_amocrm", key, "--json")
        story = json.loads(out)
        text = run_cli(capsys, "trace", "kaspi_amocrm", key)[1]
    assert code == 0 and story["source"]["kaspi_orders"]["raw"]["code"] == key
    assert story["source"]["kaspi_order_entries"] and story["sync_state"] == [] and story["sync_log"] == []
    assert "(never pushed)" in text


def test_trace_names_unknown_flows_and_missing_warehouses(
    data_dir: Path, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with environment({"WAREHOUSE_PATH": str(data_dir / "none.duckdb")}):
        assert run_cli(capsys, "trace", "nope", "1")[0] == 2
        code, _, err = run_cli(capsys, "trace", "payments_amocrm", "1")
    assert code == 2 and "no warehouse at" in err
    assert not (data_dir / "none.duckdb").exists()  # read-only: never created


# -- re-drive through the push's run config --------------------------------------------------------


def test_every_push_takes_redrive_keys_and_redrive_all_failed(
    sandbox_env: dict[str, str], data_dir: Path, clean: Path
) -> None:
    env = payments.flow_env(sandbox_env, data_dir, CREATE_IF_NOT_FOUND="false", PAYMENTS_MAX_ATTEMPTS="1")
    with ReceiverServer(ReceiverSettings.from_env(env)) as server:
        payments.deliver(
            server.base_url,
            *(payments.payment(f"rd-{n}", user={"telegram_id": str(n), "phone": f"+7999000111{n}"}) for n in range(3)),
        )
    assert payments.push_metadata(payments.run_flow(env))["rejected"] == 3  # out of attempts: parked
    meta = payments.push_metadata(payments.push(env, redrive_keys=["rd-0", "nope"]))
    assert (meta["redriven"], meta["rejected"], meta["parked"]) == (1, 1, 2)
    meta = payments.push_metadata(payments.push(env, redrive_all_failed=True))
    assert (meta["redriven"], meta["rejected"]) == (3, 3)
    # the old name (`redrive_payment_ids`) is covered in payments_amocrm/test_flow.py


def test_redrive_without_a_webserver_submits_nothing_and_says_so(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from integration_sync_tests.test_run_stack import free_port

    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_cli(capsys, "redrive", "payments_amocrm", "--all-failed", "--url", url)
    assert code == 2 and "does not answer" in err and "make run" in err
    code, _, err = run_cli(capsys, "redrive", "payments_amocrm", "--url", url)
    assert code == 2 and "--all-failed" in err


# -- ENVIRONMENT=dev|prod -------------------------------------------------------------------------


def test_environment_prod_picks_prod_values(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"ENVIRONMENT": "prod", "AMO_BASE_URL": "https://dev.amocrm.ru", "PROD_AMO_BASE_URL": "https://prod.amocrm.ru",
           "DEV_KASPI_TOKEN": "dev-token", "PROD_B24_WEBHOOK_URL": "", "B24_WEBHOOK_URL": "kept"}  # fmt: skip
    assert apply_environment(env) == ["AMO_BASE_URL"]
    assert env["AMO_BASE_URL"] == "https://prod.amocrm.ru" and "KASPI_TOKEN" not in env
    assert env["B24_WEBHOOK_URL"] == "kept"  # an empty PROD_ value picks nothing
    assert apply_environment(env) == ["AMO_BASE_URL"] and env["AMO_BASE_URL"] == "https://prod.amocrm.ru"
    assert apply_environment({"AMO_BASE_URL": "a", "PROD_AMO_BASE_URL": "b"}) == []  # no ENVIRONMENT: nothing

    (clean / ".env").write_text("ENVIRONMENT=dev\nDEV_AMO_PIPELINE_ID=42\nPROD_AMO_PIPELINE_ID=43\nAMO_PIPELINE_ID=1\n")
    monkeypatch.delenv("AMO_PIPELINE_ID", raising=False)
    load_dotenv(clean / ".env")
    assert os.environ["AMO_PIPELINE_ID"] == "42"
    monkeypatch.setenv("ENVIRONMENT", "staging")
    with pytest.raises(SystemExit, match="ENVIRONMENT must be one of dev, prod"):
        load_dotenv(clean / ".env")


def test_definitions_apply_environment_at_import(clean: Path) -> None:
    """The code location (loaded by the webserver and daemon, not through the CLI) applies it too."""
    import subprocess
    import sys

    env = {**os.environ, "ENVIRONMENT": "prod", "PROD_WAREHOUSE_PATH": str(clean / "prod.duckdb")}
    code = (
        "import os, integration_sync.definitions as d;"
        "print(d.defs.resources['warehouse'].database, os.environ['WAREHOUSE_PATH'])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(clean / "prod.duckdb")] * 2
