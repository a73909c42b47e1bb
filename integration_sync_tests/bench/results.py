"""One benchmark measurement and the table/JSON they are reported as."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Result:
    """A measured value beside its goal; `passed` says whether the goal holds."""

    flow: str
    name: str
    value: float
    unit: str
    goal: str
    passed: bool
    note: str = ""


def report(results: list[Result], path: Path) -> bool:
    width = max(len(r.name) for r in results) + 2
    flow_width = max(len(r.flow) for r in results) + 2
    print(f"\n{'flow':<{flow_width}}{'measure':<{width}}{'value':>14}  {'goal':<14}ok   note")
    for r in results:
        value = f"{r.value:,.4g} {r.unit}"
        print(
            f"{r.flow:<{flow_width}}{r.name:<{width}}{value:>14}  {r.goal:<14}{'yes' if r.passed else 'NO ':<5}{r.note}"
        )
    path.write_text(json.dumps([asdict(r) for r in results], ensure_ascii=False, indent=2))
    print(f"\nwritten to {path}")
    return all(r.passed for r in results)
