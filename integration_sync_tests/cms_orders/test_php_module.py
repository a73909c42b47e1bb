"""The shop module (`deploy/bitrix/`) run with php-cli: its bodies accepted by OUR receiver over real HTTP,
the endpoint's pure functions, the queue's retry schedule, and install.sh / rollback.sh on a temp site."""

from __future__ import annotations

import base64
import calendar
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_sync.sandbox import bitrix_shop
from integration_sync.sandbox.bitrix_shop_data import RAW_MARK, generate
from integration_sync.webhooks.bitrix_order import ShopOrder
from integration_sync.webhooks.server import ReceiverServer
from integration_sync.webhooks.settings import ReceiverSettings

pytestmark = pytest.mark.skipif(
    shutil.which("php") is None, reason="php-cli not installed (`make unit` installs it as root with apt-get)"
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "bitrix"
DRIVER = Path(__file__).parent / "php_fixtures" / "driver.php"
TOKEN = "php-module-hook-token-0123456789"
URL = "/webhooks/bitrix/order"
SAVED_AT = 1796029503  # 2026-11-30T14:05:03+05:00
CONFIG: dict[str, Any] = {"webhook_token": TOKEN}
IRINA_KIM_CP1251 = "hex:" + "Ирина Ким".encode("cp1251").hex()

ORDERS: dict[str, dict[str, Any]] = {
    "kazakh": {  # ids as Bitrix hands them out (digit strings), money a number, dates in three forms
        "ID": "1234", "ACCOUNT_NUMBER": "1234", "STATUS_ID": "P", "OLD_STATUS_ID": "N", "PRICE": 15000.5,
        "CURRENCY": "KZT", "USER_ID": "57", "PAYED": "Y", "CANCELED": "N",
        "DATE_INSERT": "30.11.2026 14:05:00", "DATE_UPDATE": 1796029800, "DATE_STATUS": "2026-11-30T09:10:00+00:00",
        "PROPERTIES": {"NAME": "Әсел Нұрғалиева", "PHONE": "+7 701 123 45 67", "EMAIL": "a@example.kz",
                       "ADDRESS": "Астана, пр. Мәңгілік Ел 55", "DELIVERY": "Курьер", "DELIVERY_DATE": "2026-12-01"},
        "BASKET": [{"PRODUCT_ID": "104", "NAME": "Пионы «Ақ шағала»", "QUANTITY": "2", "PRICE": "7500.25"}],
    },
    "cp1251_name": {
        "ID": 1235, "STATUS_ID": "N", "PRICE": "800", "CURRENCY": "KZT", "USER_ID": 58,
        "DATE_INSERT": 1796029500, "DATE_UPDATE": 1796029500,
        "PROPERTIES": {"NAME": IRINA_KIM_CP1251, "PHONE": "87011234567"},
        "BASKET": [{"PRODUCT_ID": 110, "NAME": "Открытка", "QUANTITY": 1, "PRICE": 800}],
    },
    "no_phone": {
        "ID": 1236, "STATUS_ID": "N", "PRICE": "0", "CURRENCY": "KZT", "USER_ID": 59,
        "DATE_INSERT": 1796029500, "DATE_UPDATE": 1796029500,
        "PROPERTIES": {"NAME": "Ирина", "PHONE": "", "EMAIL": None}, "BASKET": [],
    },
}  # fmt: skip


def php(*calls: tuple[str, list[Any]]) -> list[Any]:
    """Run module functions through the driver; bytes for a string result."""
    payload = json.dumps([{"fn": fn, "args": args} for fn, args in calls])
    done = subprocess.run(["php", str(DRIVER)], input=payload, capture_output=True, text=True, check=True, timeout=30)
    results = []
    for item in json.loads(done.stdout):
        assert "error" not in item, item["error"]
        results.append(base64.b64decode(item["b64"]) if "b64" in item else item["value"])
    return results


def send(server: ReceiverServer, body: bytes, config: dict[str, Any] = CONFIG) -> httpx.Response:
    """POST what the agent sends for a stored body (the module's `message`: body and headers)."""
    [[sent, headers]] = php(("IntegrationSync\\message", ["hex:" + body.hex(), config]))
    content = base64.b64decode(sent["b64"]) if isinstance(sent, dict) else sent.encode()
    return httpx.post(server.url(URL), content=content, headers=dict(h.split(": ", 1) for h in headers), timeout=10)


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token_in_body: bool = False) -> ReceiverServer:
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("WEBHOOK_TOKEN_IN_BODY", "true" if token_in_body else "false")
    return ReceiverServer(ReceiverSettings(secret="", inbox_path=tmp_path / "inbox.sqlite", max_body_bytes=65536))


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReceiverServer]:
    with start(tmp_path, monkeypatch) as srv:
        yield srv


def test_every_php_file_passes_php_lint() -> None:
    files = sorted(DEPLOY.rglob("*.php")) + sorted(DRIVER.parent.glob("*.php"))
    assert len(files) >= 8
    for file in files:
        done = subprocess.run(["php", "-l", str(file)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


def test_module_bodies_are_accepted_by_our_receiver_as_the_shop_meant(server: ReceiverServer) -> None:
    bodies = php(*[("IntegrationSync\\order_body", [order, True, SAVED_AT, {}]) for order in ORDERS.values()])
    raw_order = {**ORDERS["cp1251_name"], "ID": 1237}  # the same content would be a duplicate version
    raw_order["PROPERTIES"] = {"NAME": "hex:" + 'Ирина "Ким"\\'.encode("cp1251").hex()}  # JSON-escaped raw
    raw = php(("IntegrationSync\\order_body", [raw_order, False, SAVED_AT, {"legacy_charset": ""}]))
    for body in [*bodies, *raw]:
        answer = send(server, body)
        assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
    events = server.inbox.read_after(0, 10)
    assert len(events) == 4 and events[0].payload.encode() == bodies[0]  # stored exactly as sent
    kazakh = json.loads(events[0].payload)
    assert kazakh["event"] == "order.saved" and kazakh["is_new"] is True
    assert kazakh["sent_at"] == "2026-11-30T14:05:03+05:00"
    order = kazakh["order"]
    assert (order["ID"], order["USER_ID"], order["BASKET"][0]["PRODUCT_ID"]) == (1234, 57, 104)
    assert (order["PRICE"], order["BASKET"][0]["PRICE"], order["BASKET"][0]["QUANTITY"]) == ("15000.50", "7500.25", 2)
    assert order["DATE_INSERT"] == "2026-11-30T14:05:00+05:00"
    assert order["DATE_UPDATE"] == "2026-11-30T14:10:00+05:00" and order["DATE_STATUS"] == "2026-11-30T14:10:00+05:00"
    assert order["PROPERTIES"]["NAME"] == "Әсел Нұрғалиева" and order["OLD_STATUS_ID"] == "N"
    assert order["BASKET"][0]["NAME"] == "Пионы «Ақ шағала»"
    parsed = ShopOrder.model_validate(order)
    assert str(parsed.PRICE) == "15000.50" and parsed.DATE_INSERT.utcoffset() == timedelta(hours=5)
    assert events[0].event_date == "2026-11-30"
    # a cp1251 name: converted by the shop (no mark), or sent raw and read as cp1251 by us (marked)
    converted, no_phone, raw_sent = (json.loads(e.payload)["order"] for e in events[1:])
    assert converted["PROPERTIES"]["NAME"] == "Ирина Ким" and events[1].reason is None
    assert raw_sent["PROPERTIES"]["NAME"] == 'Ирина "Ким"\\'
    assert events[3].reason is not None and "PROPERTIES.NAME" in events[3].reason
    assert b'"\xc8\xf0\xe8\xed\xe0 \\"\xca\xe8\xec\\"\\\\"' in raw[0]  # raw bytes on the wire, JSON-escaped
    assert no_phone["PROPERTIES"] == {"NAME": "Ирина"} and no_phone["BASKET"] == [] and no_phone["PRICE"] == "0.00"


def test_module_renders_every_emulator_order_as_the_emulator_does() -> None:
    """The emulator is the contract's executable spec: the PHP builder, fed an order's fields (ids as
    strings, money as numbers, dates without offset included), gives the same order once parsed."""
    _, orders = generate(7, 60, 30, SAVED_AT)
    rendered = [o.render() for o in orders if o.raw_name is None]
    assert any(o.flags for o in orders)
    built = php(*[("IntegrationSync\\order_object", [r, {}]) for r in rendered])
    for want, got in zip(rendered, built, strict=True):
        assert ShopOrder.model_validate(got).canonical_json() == ShopOrder.model_validate(want).canonical_json()
    assert RAW_MARK not in json.dumps(built)


def test_signature_legacy_token_and_ping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [body, ping] = php(
        ("IntegrationSync\\order_body", [ORDERS["kazakh"], True, SAVED_AT, {}]),
        ("IntegrationSync\\ping_body", [SAVED_AT, {}]),
    )
    [signature] = php(("IntegrationSync\\signature", ["hex:" + body.hex(), TOKEN]))
    assert signature == bitrix_shop.sign(body, TOKEN).encode()  # the emulator's (and the receiver's) HMAC
    legacy = {"webhook_token": TOKEN, "token_in_body": True}
    with start(tmp_path / "signed", monkeypatch) as signed:
        assert send(signed, ping).json() == {"status": "ok"}
        other = send(signed, body, {"webhook_token": "another-token"})
        assert other.status_code == 401
        assert send(signed, body, legacy).status_code == 401  # the token in the body only behind the flag
        assert signed.inbox.count() == 0
    with start(tmp_path / "legacy", monkeypatch, token_in_body=True) as on:
        assert send(on, ping, legacy).json() == {"status": "ok"}
        answer = send(on, body, legacy)
        assert answer.status_code == 200 and answer.json()["status"] == "accepted"
        [event] = on.inbox.read_after(0, 10)
        assert TOKEN not in event.payload and json.loads(event.payload)["order"]["ID"] == 1234
        assert send(on, body, legacy).json() == {"status": "duplicate"}  # the agent stops on a re-delivery too


def test_retry_schedule_matches_the_emulators_agent() -> None:
    delays = php(*[("IntegrationSync\\Queue\\next_delay", [n]) for n in range(1, bitrix_shop.MAX_ATTEMPTS + 2)])
    expected: list[int | None] = [
        int(bitrix_shop.RETRY_DELAYS_S[min(n, len(bitrix_shop.RETRY_DELAYS_S)) - 1]) for n in range(1, 8)
    ]
    assert delays == [*expected, None, None] == [60, 300, 1800, 1800, 1800, 1800, 1800, None, None]
    retry, give_up = php(
        ("IntegrationSync\\Queue\\failure_fields", [0, "HTTP 503", SAVED_AT]),
        ("IntegrationSync\\Queue\\failure_fields", [7, "HTTP 401 Ключ", SAVED_AT]),
    )
    assert retry == {"attempts": 1, "next_attempt_at": "2026-11-30 09:06:03", "last_status": "retry: HTTP 503"}
    assert give_up == {"attempts": 8, "next_attempt_at": None, "last_status": "gave up: HTTP 401 ?"}


def test_queue_sql_claims_a_due_row_once_and_keeps_body_bytes() -> None:
    row = {"id": "5", "order_id": "1234", "body": "{}", "attempts": "2", "next_attempt_at": "2026-11-30 09:00:00"}
    claimed, lost = php(("queue_trace", [row, 1, SAVED_AT]), ("queue_trace", [row, 0, SAVED_AT]))
    insert, _, claim, failed = claimed["sql"]
    assert "X'" + b'{"x":"\xc8"}'.hex() + "'" in insert  # raw bytes as a hex literal: no escaping, no charset
    assert "next_attempt_at = '2026-11-30 09:07:03' WHERE id = 5 AND next_attempt_at = '2026-11-30 09:00:00'" in claim
    assert claimed["due"] == [
        {"id": 5, "order_id": 1234, "body": "{}", "attempts": 2, "next_attempt_at": "2026-11-30 09:00:00"}
    ]
    assert "attempts = 3" in failed and "'2026-11-30 09:35:03'" in failed and claimed["next"] == SAVED_AT + 1800
    assert claimed["claimed"] is True
    assert lost["claimed"] is False and lost["next"] is None  # another agent run claimed it first


def php_has_curl() -> bool:
    done = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=30, check=False)
    return "curl" in done.stdout.split()


@pytest.mark.parametrize("transport", ["curl", "stream"])
def test_agent_delivers_due_rows_to_our_receiver(server: ReceiverServer, transport: str) -> None:
    """`IntegrationSyncAgent::send()`'s run against our receiver (with curl, and with PHP's http stream
    where php-curl is missing): accepted and duplicate both end a row; no answer (a closed port) retries."""
    if transport == "curl" and not php_has_curl():
        pytest.skip("php-curl not installed (the module falls back to PHP's http stream)")
    [body] = php(("IntegrationSync\\order_body", [ORDERS["kazakh"], True, SAVED_AT, {}]))
    due = "2026-11-30 09:05:00"
    rows = [
        {"id": "1", "order_id": "1234", "body": "hex:" + body.hex(), "attempts": "0", "next_attempt_at": due},
        {"id": "2", "order_id": "1234", "body": "hex:" + body.hex(), "attempts": "3", "next_attempt_at": due},
        {"id": "3", "order_id": None, "body": "{}", "attempts": "0", "next_attempt_at": due},  # refused: 422
    ]
    config = {"receiver_url": server.url(URL), "webhook_token": TOKEN, "transport": transport}
    started = time.time()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = {**config, "receiver_url": f"http://127.0.0.1:{closed.getsockname()[1]}{URL}"}
        [sql, sql_down] = php(("agent_run", [rows, config]), ("agent_run", [rows[:1], down]))
    claims = [q for q in sql if "SET next_attempt_at" in q]
    assert len(claims) == 3 and all("AND next_attempt_at = '2026-11-30 09:05:00'" in q for q in claims)
    updates = [q for q in sql if "SET attempts" in q]
    [retry_at] = re.findall(r"'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)'", updates[2])  # the agent's clock + 60 s
    ran_at = calendar.timegm(time.strptime(retry_at, "%Y-%m-%d %H:%M:%S")) - 60
    assert started - 1 <= ran_at <= time.time() + 1
    updates[2] = updates[2].replace(retry_at, "<in 60 s>")
    assert updates == [
        "UPDATE integration_sync_queue SET attempts = 1, next_attempt_at = NULL,"
        " last_status = 'sent: HTTP 200 accepted' WHERE id = 1",
        "UPDATE integration_sync_queue SET attempts = 4, next_attempt_at = NULL,"
        " last_status = 'sent: HTTP 200 duplicate' WHERE id = 2",
        "UPDATE integration_sync_queue SET attempts = 1, next_attempt_at = '<in 60 s>',"
        " last_status = 'retry: HTTP 422' WHERE id = 3",
    ]
    assert server.inbox.count() == 1 and server.inbox.read_after(0, 1)[0].payload.encode() == body
    [retry] = [q for q in sql_down if "SET attempts" in q]
    assert "attempts = 1, next_attempt_at = '" in retry and "last_status = 'retry: no answer: " in retry


def test_delivery_outcome_any_2xx_ends_it() -> None:
    calls = [
        ("IntegrationSync\\Handler\\outcome", [200, '{"status": "duplicate"}', ""]),
        ("IntegrationSync\\Handler\\outcome", [204, "", ""]),
        ("IntegrationSync\\Handler\\outcome", [401, '{"error": "invalid signature"}', ""]),
        ("IntegrationSync\\Handler\\outcome", [0, "", "Operation timed out"]),
    ]
    assert php(*calls) == [
        [True, "HTTP 200 duplicate"],
        [True, "HTTP 204"],
        [False, "HTTP 401"],
        [False, "no answer: Operation timed out"],
    ]


def test_endpoint_status_checks_and_decisions() -> None:
    fn = "IntegrationSync\\Endpoint\\"
    requests = php(
        *[
            (fn + "status_request", [body])
            for body in ('{"order_id": 1234, "status_id": "P"}', '{"order_id": "1234", "status_id": "P"}',
                         '{"order_id": 1234}', "[1]", "not json", '{"order_id": true, "status_id": "P"}')
        ]
    )  # fmt: skip
    assert requests[0] == {"order_id": 1234, "status_id": "P"}
    bad = [400, {"ok": False, "error": "order_id (integer) and status_id (string) are required"}]
    assert requests[1] == requests[2] == requests[5] == {"error": bad}
    assert requests[3] == requests[4] == {"error": [400, {"ok": False, "error": "body must be a JSON object"}]}
    known = ["N", "P", "S", "D", "F", "C"]
    decisions = php(
        (fn + "status_decision", [None, known, 9, "P"]),
        (fn + "status_decision", ["N", known, 1234, "X"]),
        (fn + "status_decision", ["P", known, 1234, "P"]),
        (fn + "status_decision", ["N", known, 1234, "P"]),
        (fn + "status_ids", [{"N": "Принят", "P": "Оплачен"}]),
        (fn + "status_ids", [["N", "P"]]),
        (fn + "key_ok", ["k", "k"]),
        (fn + "key_ok", ["", ""]),
        (fn + "key_ok", [None, "k"]),
        (fn + "key_ok", ["K", "k"]),
    )
    assert decisions[0] == [404, {"ok": False, "error": "order not found"}, False]
    assert decisions[1] == [422, {"ok": False, "error": "unknown status X"}, False]
    assert decisions[2] == [200, {"ok": True, "order_id": 1234, "status_id": "P", "changed": False}, False]
    assert decisions[3] == [200, {"ok": True, "order_id": 1234, "status_id": "P", "changed": True}, True]
    assert decisions[4] == decisions[5] == ["N", "P"]
    assert decisions[6:] == [True, False, False, False]  # an unset key refuses everything


def test_endpoint_export_arguments_and_paging() -> None:
    fn = "IntegrationSync\\Endpoint\\"
    queries: list[dict[str, str]] = [
        {"entity": "orders", "date_from": "2026-11-30", "date_to": "2026-11-30", "page": "2", "page_size": "500"},
        {"entity": "users"},
        {"entity": "orders", "page_size": "501"},
        {"entity": "orders", "page_size": "0"},
        {"entity": "orders", "page": "0"},
        {"entity": "orders", "page": "x"},
        {"entity": "orders", "date_from": "2026-13-01"},
        {"entity": "orders", "date_to": "30.11.2026"},
        {"entity": "deals"},
    ]
    results = php(*[(fn + "export_request", [q, "+05:00"]) for q in queries])
    day = 1795978800  # 2026-11-30T00:00:00+05:00
    assert results[0] == {"entity": "orders", "from": day, "to": day + 86400, "page": 2, "size": 500}
    assert results[1] == {"entity": "users", "from": None, "to": None, "page": 1, "size": 200}
    assert [r["error"][0] for r in results[2:]] == [400] * 7
    assert results[2]["error"][1]["error"] == "page must be >= 1 and page_size 1..500"
    assert results[6]["error"][1]["error"] == "date_from must be YYYY-MM-DD"
    assert results[8]["error"][1]["error"] == "entity must be orders, users or products"
    pages = php(
        (fn + "export_answer", [[], 1, 200, 0]),
        (fn + "export_answer", [[{"ID": 1}], 7, 200, 1234]),
        (fn + "offset", [7, 200]),
        (fn + "user_item", [{"ID": "57", "NAME": "Ұлжан", "DATE_REGISTER": 1796029500}, {}]),
        (fn + "product_item", [{"ID": "101", "NAME": "Букет", "PRICE": "15000", "ACTIVE": "N"}, {}]),
    )
    assert pages[0] == {"items": [], "page": 1, "pages": 0, "total": 0}
    assert pages[1] == {"items": [{"ID": 1}], "page": 7, "pages": 7, "total": 1234} and pages[2] == 1200
    assert pages[3] == {"ID": 57, "NAME": "Ұлжан", "LAST_NAME": "", "EMAIL": "", "PERSONAL_PHONE": "",
                        "DATE_REGISTER": "2026-11-30T14:05:00+05:00"}  # fmt: skip
    assert pages[4] == {"ID": 101, "NAME": "Букет", "PRICE": "15000.00", "ACTIVE": "N"}


# ------------------------------------------------------------------------------- install / rollback


def run(script: str, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / script), str(site)], capture_output=True, text=True, timeout=60, check=False
    )


def backups(init: Path) -> list[Path]:
    return sorted(init.parent.glob(init.name + ".backup.*"))


def loads(init: Path) -> str:
    """Include init.php as Bitrix does (no Bitrix here) and report whether the module got loaded."""
    code = f"require {json.dumps(str(init))}; echo class_exists('IntegrationSyncAgent') ? 'loaded' : 'absent';"
    return subprocess.run(["php", "-r", code], capture_output=True, text=True, timeout=30, check=True).stdout


def test_install_twice_adds_one_include_and_rollback_restores(tmp_path: Path) -> None:
    site = tmp_path / "www"
    init = site / "local" / "php_interface" / "init.php"
    init.parent.mkdir(parents=True)
    original = "<?php\n$shopSetting = 1;\n?>\n"
    init.write_text(original)
    for _ in range(2):
        done = run("install.sh", site)
        assert done.returncode == 0, done.stderr
    text = init.read_text()
    assert text.count("integration_sync/include.php") == 1 and text.startswith(original)
    assert len(backups(init)) == 2 and backups(init)[0].read_text() == original
    assert loads(init) == "loaded"
    module = site / "local" / "php_interface" / "integration_sync"
    assert (module / "config.php").is_file() and (site / "bitrix" / "tools" / "webhook" / "index.php").is_file()
    assert "CREATE TABLE IF NOT EXISTS integration_sync_queue" in done.stdout  # no Bitrix here: the SQL printed
    done = run("rollback.sh", site)
    assert done.returncode == 0, done.stderr
    assert init.read_text() == original and loads(init) == "absent"
    assert not (site / "bitrix" / "tools" / "webhook" / "index.php").exists()


def test_install_edits_the_init_php_bitrix_uses(tmp_path: Path) -> None:
    """Bitrix includes local/php_interface/init.php INSTEAD of bitrix/php_interface/init.php: creating the
    local one on a site that has only the other would switch the site's own init.php off."""
    site = tmp_path / "www"
    init = site / "bitrix" / "php_interface" / "init.php"
    init.parent.mkdir(parents=True)
    init.write_text("<?php\n$legacy = true;\n")
    assert run("install.sh", site).returncode == 0
    assert not (site / "local" / "php_interface" / "init.php").exists()
    assert "integration_sync/include.php" in init.read_text() and loads(init) == "loaded"
    with init.open("a") as file:
        file.write("$editedAfterInstall = 1;\n")
    assert run("rollback.sh", site).returncode == 0 and init.read_text() == "<?php\n$legacy = true;\n"
    [before] = init.parent.glob("init.php.before-rollback.*")  # what the rollback replaced is kept
    assert "$editedAfterInstall" in before.read_text()


def test_install_aborts_and_restores_on_a_syntax_error(tmp_path: Path) -> None:
    site = tmp_path / "www"
    init = site / "local" / "php_interface" / "init.php"
    init.parent.mkdir(parents=True)
    broken = "<?php\n$x = ;\n"
    init.write_text(broken)
    done = run("install.sh", site)
    assert done.returncode == 1 and "syntax error" in done.stderr
    assert init.read_text() == broken
    assert not (site / "local" / "php_interface" / "integration_sync").exists()
    assert not (site / "bitrix" / "tools" / "webhook" / "index.php").exists()
