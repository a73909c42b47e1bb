"""`integration-sync doctor`: each flow's configuration as the registry knows it — configured, on the
sandbox, not configured (none of its variables set: the sandbox or another deployment serves it), or incomplete
(naming each missing variable) — plus the problems each flow's own `doctor` hook finds.

The hooks (each flow's `preflight.doctor`) check, read-only, against the services the environment
points at: credentials work, and every pipeline, stage, field and enum id the settings name exists.
They run only for a flow whose variables are all set; a hook that fails unexpectedly is one line."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from integration_sync.lib.registry import FlowPlugin, plugins


@dataclass
class FlowReport:
    flow: str
    state: str  # "configured" | "sandbox" (configured, on the emulators) | "not configured" | "incomplete"
    problems: list[str] = field(default_factory=list)


def check_flow(flow: FlowPlugin, env: Mapping[str, str]) -> FlowReport:
    if not any((env.get(name) or "").strip() for name in flow.source_vars):
        return FlowReport(flow.name, "not configured")
    problems = [f"{name} is not set" for name in flow.missing_vars(env)]
    if flow.doctor is not None and not problems:
        try:
            problems += flow.doctor(env)
        except Exception as exc:  # a bug in a check must not hide the other flows' reports
            problems.append(f"the checks against the services failed ({type(exc).__name__})")
    if problems:
        return FlowReport(flow.name, "incomplete", problems)
    return FlowReport(flow.name, "sandbox" if _on_the_sandbox(flow, env) else "configured")


def _on_the_sandbox(flow: FlowPlugin, env: Mapping[str, str]) -> bool:
    """Whether the flow's services are the built-in emulators (`integration-sync up` without credentials)."""
    sandbox = (env.get("SANDBOX_BASE_URL") or "").strip().rstrip("/")
    values = [(env.get(name) or "").strip() for name in (*flow.source_vars, *flow.account_vars)]
    urls = [v for v in values if v.startswith(("http://", "https://"))]
    return bool(sandbox and urls) and all(url.startswith(sandbox) for url in urls)


def run(env: Mapping[str, str], only: Sequence[str] = (), as_json: bool = False) -> tuple[int, str]:
    """Exit code (0 clean, 1 a configured flow has problems, 2 an unknown flow) and the text to print."""
    known = {p.name: p for p in plugins()}
    unknown = [name for name in only if name not in known]
    if unknown:
        return 2, f"unknown flow(s): {', '.join(unknown)}; flows: {', '.join(known)}"
    reports = [check_flow(p, env) for name, p in known.items() if not only or name in only]
    failed = any(r.problems for r in reports)
    if as_json:
        return int(failed), json.dumps([asdict(r) for r in reports], ensure_ascii=False, indent=2)
    lines = []
    for report in reports:
        lines.append(f"{report.flow}: {report.state}")
        lines += [f"  {report.flow}: {problem}" for problem in report.problems]
    return int(failed), "\n".join(lines)
