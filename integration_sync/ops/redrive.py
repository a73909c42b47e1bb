"""`integration-sync redrive FLOW [KEY…|--all-failed]`: re-drive failed records of any flow through the
Dagster run queue, never in this process: a push must not run beside another push of the flow.

It asks the running webserver (GraphQL, as the UI's Materialize button does) for the flow's push asset
(the asset tagged `integration_sync/push: FLOW`) and submits a run of it whose config names the keys
(`redrive_keys` / `redrive_all_failed`, handled by `lib/push.py` before the engine). The run carries the
flow's push tag, so the instance queues it behind a running run of the flow and the pool keeps its
push step apart from any other; the daemon launches it. Without a webserver nothing is submitted:
`dagster job launch` would queue a run no daemon may be there to take, so the error says to start the
stack (`make run`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from integration_sync.lib.push import PUSH_TAG_KEY, push_tags

REPOSITORIES = """
{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {
    name location { name } assetNodes { assetKey { path } opNames tags { key value } }
} } ... on PythonError { message } } }
"""
LAUNCH = """
mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } } ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message } ... on UnauthorizedError { message }
} }
"""
RUN = """
query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""
DONE = ("SUCCESS", "FAILURE", "CANCELED")


class RedriveError(Exception):
    """Why no run was submitted (shown to the operator)."""


@dataclass(frozen=True)
class PushAsset:
    location: str
    repository: str
    path: list[str]
    op_name: str


def webserver_url(env: Mapping[str, str]) -> str:
    host = (env.get("INTEGRATION_SYNC_HOST") or "127.0.0.1").strip()
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a listen address, not one to connect to
        host = "127.0.0.1"
    return f"http://{host}:{(env.get('DAGSTER_PORT') or '3000').strip()}"


def _graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    try:
        answer = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    except httpx.HTTPError as exc:
        raise RedriveError(
            f"the Dagster webserver at {url} does not answer ({type(exc).__name__}): start the stack"
            " (`make run` / `integration-sync up`) or pass --url; nothing was re-driven"
        ) from exc
    if answer.status_code != 200:
        raise RedriveError(f"the Dagster webserver at {url} answered HTTP {answer.status_code}")
    body: dict[str, Any] = answer.json()
    if body.get("errors"):
        raise RedriveError(f"GraphQL error: {body['errors'][0].get('message')}")
    data: dict[str, Any] = body["data"]
    return data


def find_push_asset(url: str, flow: str) -> PushAsset:
    answer = _graphql(url, REPOSITORIES)["repositoriesOrError"]
    if answer.get("__typename") != "RepositoryConnection":
        raise RedriveError(f"the webserver could not list its code: {answer.get('message')}")
    for repo in answer["nodes"]:
        for node in repo["assetNodes"]:
            if {"key": PUSH_TAG_KEY, "value": flow} in node["tags"]:
                return PushAsset(repo["location"]["name"], repo["name"], node["assetKey"]["path"], node["opNames"][0])
    raise RedriveError(f"no push asset of flow {flow!r} in the code the webserver at {url} serves")


def submit(url: str, flow: str, keys: Sequence[str], all_failed: bool) -> str:
    """Submit the flow's push with the re-drive in its config; returns the run id."""
    if not keys and not all_failed:
        raise RedriveError("name the keys to re-drive, or --all-failed")
    asset = find_push_asset(url, flow)
    config: dict[str, Any] = {"redrive_all_failed": True} if all_failed else {"redrive_keys": list(keys)}
    params = {
        "selector": {
            "repositoryLocationName": asset.location,
            "repositoryName": asset.repository,
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": asset.path}],
        },
        "mode": "default",
        "runConfigData": {"ops": {asset.op_name: {"config": config}}},
        "executionMetadata": {
            "tags": [{"key": k, "value": v} for k, v in {**push_tags(flow), "integration_sync/redrive": "cli"}.items()]
        },
    }
    result = _graphql(url, LAUNCH, params=params)["launchPipelineExecution"]
    if result.get("__typename") != "LaunchRunSuccess":
        detail = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
        raise RedriveError(f"the run was not submitted: {result.get('__typename')}: {detail}")
    return str(result["run"]["runId"])


def wait(url: str, run_id: str, timeout_s: float) -> str:
    """The run's final status (or the last seen one when `timeout_s` passes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(_graphql(url, RUN, runId=run_id)["runOrError"].get("status"))
        if status in DONE or time.monotonic() > deadline:
            return status
        time.sleep(1)
