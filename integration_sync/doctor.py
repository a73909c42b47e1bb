"""`integration-sync doctor`: each flow's configuration as the registry knows it — configured, not
configured (none of its variables set: the sandbox or another deployment serves it), or incomplete
(naming each missing variable) — plus the problems each flow's own `doctor` hook finds.

It reads the environment only (after `.env`); the checks against the live services come with each
flow's hook."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from integration_sync.lib.registry import FlowPlugin, plugins


@dataclass
class FlowReport:
    flow: str
    state: str  # "configured" | "not configured" | "incomplete"
    problems: list[str] = field(default_factory=list)


def check_flow(flow: FlowPlugin, env: Mapping[str, str]) -> FlowReport:
    if not any((env.get(name) or "").strip() for name in flow.source_vars):
        return FlowReport(flow.name, "not configured")
    problems = [f"{name} is not set" for name in flow.missing_vars(env)]
    if flow.doctor is not None:
        problems += flow.doctor(env)
    return FlowReport(flow.name, "incomplete" if problems else "configured", problems)


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
