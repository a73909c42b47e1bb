"""Adding a flow touches only its own folder: a copy of the package gets the demo flow's folder in
`defs/` (and nothing else), and the code location, the warehouse's migrations, the CLI, the webhook
receiver and the sandbox settings all pick it up, and its push runs through the shared skeleton."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = Path(__file__).with_name("demo_flow") / "demo_notes"

PROBE = textwrap.dedent(
    """
    import contextlib, io, json, os
    import dagster as dg
    from starlette.testclient import TestClient

    import integration_sync
    from integration_sync.cli import main
    from integration_sync.definitions import defs
    from integration_sync.defs.migrations import MIGRATIONS
    from integration_sync.defs.resources import warehouse_resource
    from integration_sync.sandbox.env import sandbox_env
    from integration_sync.webhooks.app import create_app
    from integration_sync.webhooks.settings import ReceiverSettings

    out = {"package": integration_sync.__file__}
    graph = defs.resolve_asset_graph()
    out["assets"] = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    out["checks"] = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    repo = defs.get_repository_def()
    out["jobs"] = {j.name: dict(j.tags) for j in repo.get_all_jobs() if not j.name.startswith("__")}
    out["schedules"] = sorted(s.name for s in repo.schedule_defs)
    out["pools"] = sorted(p for k in graph.get_all_asset_keys() for p in (graph.get(k).pools or []))
    out["migrations"] = [m.id for m in MIGRATIONS]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        out["command_exit"] = main(["demo-notes", "--name", "flow"])
    out["command_output"] = buffer.getvalue().strip()
    app = create_app(ReceiverSettings.from_env())
    with TestClient(app) as client:
        out["route"] = client.post("/webhook/demo-note", content=b"{}").status_code
    out["sandbox_env"] = sandbox_env("http://sandbox:1").get("DEMO_NOTES_URL")

    from integration_sync.defs.demo_notes.definitions import FLOW, TARGET
    result = dg.materialize(
        [*FLOW.ingest, FLOW.push_asset, *FLOW.all_checks],
        resources={"warehouse": warehouse_resource(), **FLOW.resources()},
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": "2026-03-01", "dagster/asset_partition_range_end": "2026-03-02"},
    )
    out["per_partition"] = {
        m.partition: m.metadata["stored"].value for m in result.asset_materializations_for_node("demo__notes")
    }
    push = result.asset_materializations_for_node("memory__demo_notes")[-1].metadata
    out["push"] = {k: push[k].value for k in ("created", "updated", "unchanged")}
    out["records"] = len(TARGET.records)
    out["check_results"] = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    print("PROBE " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def copy_with_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("added-flow")
    shutil.copytree(REPO / "integration_sync", root / "integration_sync", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(
        DEMO, root / "integration_sync" / "defs" / "demo_notes", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


def test_a_flow_folder_is_all_a_new_flow_needs(copy_with_demo: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(copy_with_demo),
        "INTEGRATION_SYNC_DATA_DIR": str(tmp_path),
        "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
        "PLATFORM_WEBHOOK_SECRET": "demo-secret",
        "WEBHOOK_INBOX_PATH": str(tmp_path / "inbox.sqlite"),
        "DAGSTER_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    out = json.loads(line.removeprefix("PROBE "))

    assert out["package"].startswith(str(copy_with_demo))  # the copy, not the installed package
    assert {"demo/notes", "memory/demo_notes"} <= set(out["assets"])
    assert "bitrix24/user_deals" in out["assets"]  # the other flows are still there
    assert {
        "memory/demo_notes:target_ids_present",
        "memory/demo_notes:one_target_per_record",
        "memory/demo_notes:rejected_share_below_threshold",
    } <= set(out["checks"])
    assert out["jobs"]["demo_notes_job"] == {"integration_sync/push": "demo_notes"}
    assert "demo_notes_daily" in out["schedules"] and "push:demo_notes" in out["pools"]
    assert "demo_0001_notes" in out["migrations"]
    assert (out["command_exit"], out["command_output"]) == (0, "demo notes: hello flow")
    assert out["route"] == 200
    assert out["sandbox_env"] == "http://sandbox:1/demo"
    # 2026-03-01 holds 3 notes and 2026-03-02 one (ordinal % 3 + 1): each partition reports its own count
    assert out["per_partition"] == {"2026-03-01": 3, "2026-03-02": 1}
    assert out["push"] == {"created": 4, "updated": 0, "unchanged": 0} and out["records"] == 4
    assert all(out["check_results"].values()), out["check_results"]


def test_the_product_does_not_ship_the_demo_flow() -> None:
    assert not (REPO / "integration_sync" / "defs" / "demo_notes").exists()
    from integration_sync.lib.registry import plugins

    assert "demo_notes" not in {p.name for p in plugins()}
