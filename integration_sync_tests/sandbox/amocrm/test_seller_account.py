"""The Sheets seller's own amoCRM account: separate auth, the seed's shapes, status webhooks as amoCRM sends them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from integration_sync.sandbox import amocrm_schema as amo
from integration_sync.sandbox.amocrm_seller import SELLER_APP, TRIGGER_VARIANTS, seller_env
from integration_sync.sandbox.server import SandboxConfig, SandboxServer
from integration_sync_tests.sandbox.amocrm.conftest import FAST, reset

SELLER_AUTH = {"Authorization": f"Bearer {SELLER_APP.initial_access}"}
FAST_HOOKS = {**FAST, "amocrm_seller_leads": 40, "amocrm_seller_hook_time_scale": 1 / 3600}  # 15 min -> 0.25 s


class Receiver:
    """A local HTTP endpoint that records every POST and answers the statuses it is told to, in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.delays: list[float] = []  # seconds to sit on each answer, in turn
        self.posts: list[tuple[dict[str, str], str]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                with receiver.lock:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                    delay = receiver.delays.pop(0) if receiver.delays else 0.0
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook/amocrm/s3cr3t"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.posts) >= count:
                    return list(self.posts)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.posts)} posts, wanted {count}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([200])
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def seller(server: SandboxServer, control: httpx.Client) -> Iterator[httpx.Client]:
    reset(control, **FAST_HOOKS)
    with httpx.Client(
        base_url=seller_env(server.base_url)["SHEETS_AMO_BASE_URL"], headers=SELLER_AUTH, timeout=10
    ) as c:
        yield c


def subscribe(seller: httpx.Client, url: str) -> None:
    response = seller.post("/api/v4/webhooks", json={"destination": url, "settings": ["status_lead"]})
    assert response.status_code == 200, response.text


def leads(seller: httpx.Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in (1, 2, 3):
        response = seller.get("/api/v4/leads", params={"limit": 250, "page": page, "with": "contacts"})
        if response.status_code == 204:
            break
        out += response.json()["_embedded"]["leads"]
    return out


def decoded(body: str) -> dict[str, str]:
    return dict(parse_qsl(body, keep_blank_values=True, strict_parsing=True))


def test_the_seller_account_has_its_own_auth_and_host(server: SandboxServer, seller: httpx.Client) -> None:
    base = server.base_url
    first = {"Authorization": f"Bearer {amo.AMO_INITIAL_ACCESS_TOKEN}"}
    assert seller.get("/api/v4/account").json()["subdomain"] == "sellersandbox"
    assert httpx.get(f"{base}/amocrm-seller/api/v4/leads", headers=first).status_code == 401
    assert httpx.get(f"{base}/amocrm/api/v4/leads", headers=SELLER_AUTH).status_code == 401
    refresh = {
        "client_id": amo.AMO_CLIENT_ID,
        "client_secret": amo.AMO_CLIENT_SECRET,
        "redirect_uri": amo.AMO_REDIRECT_URI,
        "grant_type": "refresh_token",
        "refresh_token": amo.AMO_INITIAL_REFRESH_TOKEN,
    }
    assert httpx.post(f"{base}/amocrm-seller/oauth2/access_token", json=refresh).status_code == 401
    env = seller_env(base)
    assert env["SHEETS_AMO_BASE_URL"].endswith("/amocrm-seller") and env["PIPELINE_KEYWORD"] == "sotuv"
    assert set(env["TRIGGER_STATUS_NAMES"].split(",")) | {env["TRIGGER_STATUS_NAME"]} == set(TRIGGER_VARIANTS)


def test_the_seed_has_the_sellers_shapes(seller: httpx.Client, control: httpx.Client) -> None:
    pipelines = seller.get("/api/v4/leads/pipelines").json()["_embedded"]["pipelines"]
    keyword = [p for p in pipelines if "sotuv" in p["name"].lower()]
    assert len(keyword) >= 2 and len(keyword) < len(pipelines)
    names = {s["name"]: p["id"] for p in pipelines for s in p["_embedded"]["statuses"]}
    assert set(TRIGGER_VARIANTS) <= set(names)
    rows = leads(seller)
    assert len(rows) == 40
    by_status = {(r["pipeline_id"], r["status_id"]) for r in rows}
    triggers = {
        (p["id"], s["id"]) for p in pipelines for s in p["_embedded"]["statuses"] if s["name"] in TRIGGER_VARIANTS
    }
    assert triggers <= by_status  # every variant spelling has a lead on it
    fields: dict[str, list[Any]] = {}
    for row in rows:
        for cf in row["custom_fields_values"] or []:
            fields.setdefault(cf["field_name"], []).append(cf["values"][0])
        assert [c["is_main"] for c in row["_embedded"]["contacts"]] == [True]
    assert {"Продукт", "Дата заказа", "Регион", "Код сотрудника", "Заказ №"} <= set(fields)
    described = seller.get("/api/v4/leads/custom_fields").json()["_embedded"]["custom_fields"]
    assert {f["account_id"] for f in described} == {32000001}
    assert [f["type"] for f in described if f["name"] == "Продукт"] == ["select"]
    assert all(isinstance(v["enum_id"], int) for v in fields["Продукт"])
    assert all(isinstance(v["value"], int) for v in fields["Дата заказа"])  # unix seconds
    assert any(str(v["value"])[0] == "0" for v in fields["Код сотрудника"])  # leading zeros kept as typed
    assert len(fields["Код сотрудника"]) < len(rows) and len(fields["Продукт"]) < len(rows)  # missing values
    with_company = [r for r in rows if r["_embedded"]["companies"]]
    assert 0 < len(with_company) < len(rows)
    company = seller.get(f"/api/v4/companies/{with_company[0]['_embedded']['companies'][0]['id']}").json()
    assert company["name"] and company["account_id"] == 32000001
    contacts = seller.get("/api/v4/contacts", params={"limit": 250}).json()["_embedded"]["contacts"]
    phones = [cf["values"][0]["value"] for c in contacts for cf in c["custom_fields_values"] or []]
    assert {p[:4] for p in phones} & {"+998"} and any(p[0].isdigit() for p in phones)
    assert any(" " in p for p in phones) and any(p.isdigit() for p in phones)


def test_the_same_seed_and_clock_give_the_same_seller_account() -> None:
    """Leads are dated from the sandbox's clock: pinned, two sandboxes hold the same account."""
    config = SandboxConfig(**{**FAST_HOOKS, "clock_epoch": 1_760_000_000.0})
    dumps = []
    for cfg in (config, config, config.model_copy(update={"seed": 6})):
        with SandboxServer(cfg) as srv, httpx.Client(base_url=srv.base_url) as http:
            dumps.append(http.get("/_sandbox/amocrm-seller/leads").json())
    assert dumps[0] == dumps[1] and dumps[0] != dumps[2]


def test_a_status_change_is_one_form_post_with_bracket_keys(
    seller: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    subscribe(seller, receiver.url)
    lead = leads(seller)[0]
    patch = [{"id": lead["id"], "pipeline_id": lead["pipeline_id"], "status_id": 142}]
    assert seller.patch("/api/v4/leads", json=patch).status_code == 200
    [(headers, body)] = receiver.wait(1)
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert not [h for h in headers if "sign" in h]
    form = decoded(body)
    assert form["leads[status][0][id]"] == str(lead["id"])
    assert form["leads[status][0][status_id]"] == "142"
    assert form["leads[status][0][old_status_id]"] == str(lead["status_id"])
    assert (
        form["leads[status][0][pipeline_id]"] == form["leads[status][0][old_pipeline_id]"] == str(lead["pipeline_id"])
    )
    assert (form["account[id]"], form["account[subdomain]"]) == ("32000001", "sellersandbox")
    assert not any(k.startswith("leads[status][1]") for k in form)
    time.sleep(0.3)  # no second delivery after a 200
    [attempt] = control.get("/_sandbox/amocrm-seller/webhook_deliveries").json()
    assert (attempt["attempt"], attempt["status"], attempt["ok"]) == (1, 200, True)


def test_a_hook_answered_500_is_sent_again(seller: httpx.Client, control: httpx.Client, receiver: Receiver) -> None:
    receiver.statuses[:] = [500, 200]
    subscribe(seller, receiver.url)
    lead = leads(seller)[1]
    moved = control.post(f"/_sandbox/amocrm-seller/leads/{lead['id']}/status", json={"status_id": 143})
    assert moved.status_code == 200, moved.text
    posts = receiver.wait(2)
    assert posts[0][1] == posts[1][1]
    attempts = control.get("/_sandbox/amocrm-seller/webhook_deliveries").json()
    assert [(a["attempt"], a["status"], a["ok"]) for a in attempts] == [(1, 500, False), (2, 200, True)]
    assert attempts[1]["at"] - attempts[0]["at"] >= 15 * 60 / 3600 * 0.9  # the 5xx schedule, scaled


def test_several_leads_moved_at_once_are_one_post(
    seller: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    subscribe(seller, receiver.url)
    rows = [r for r in leads(seller) if r["status_id"] not in (142, 143)][:3]
    moves = [{"id": r["id"], "pipeline_id": r["pipeline_id"], "status_id": 142} for r in rows]
    assert control.post("/_sandbox/amocrm-seller/leads/status", json=moves).status_code == 200
    [(_, body)] = receiver.wait(1)
    form = decoded(body)
    assert [form[f"leads[status][{i}][id]"] for i in range(3)] == [str(r["id"]) for r in rows]
    assert not any(k.startswith("leads[status][3]") for k in form)
    assert all(isinstance(v, str) for v in form.values())


def test_a_slow_receiver_holds_no_api_call_and_gets_the_hook_again(
    seller: httpx.Client, control: httpx.Client, receiver: Receiver
) -> None:
    receiver.delays[:] = [2.4]  # past amoCRM's 2 s
    subscribe(seller, receiver.url)
    lead = leads(seller)[2]
    started = time.monotonic()
    patch = [{"id": lead["id"], "pipeline_id": lead["pipeline_id"], "status_id": 143}]
    assert seller.patch("/api/v4/leads", json=patch).status_code == 200
    assert time.monotonic() - started < 1.0  # sent from the background, not inside the request
    receiver.wait(2)
    attempts = control.get("/_sandbox/amocrm-seller/webhook_deliveries").json()
    assert [(a["attempt"], a["error"], a["ok"]) for a in attempts] == [(1, "timeout", False), (2, None, True)]
