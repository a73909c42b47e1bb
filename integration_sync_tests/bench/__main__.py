"""Run every benchmark, print the table and write bench-results.json (`make bench`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from integration_sync_tests.bench import abcp_bitrix24, amocrm_sheets, cms_orders, kaspi_amocrm, payments_amocrm
from integration_sync_tests.bench.results import Result, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller volumes, for trying the harness")
    parser.add_argument("--output", default="bench-results.json")
    parser.add_argument(
        "--only",
        choices=["abcp_bitrix24", "kaspi_amocrm", "payments_amocrm", "amocrm_sheets", "cms_orders"],
        help="run one flow's benchmarks",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    results: list[Result] = []
    if args.only == "kaspi_amocrm":
        results += kaspi_amocrm.push_benchmarks(orders=200 if args.quick else 2_000, days=2 if args.quick else 5)
    elif args.only == "abcp_bitrix24":
        results += abcp_bitrix24.push_benchmarks() + abcp_bitrix24.ingest_benchmarks()
    elif args.only == "payments_amocrm":
        results += payments_amocrm.payments_benchmarks(quick=args.quick)
    elif args.only == "amocrm_sheets":
        results += amocrm_sheets.sheets_benchmarks(quick=args.quick)
    elif args.only == "cms_orders":
        results += cms_orders.cms_benchmarks(quick=args.quick)
    elif args.quick:
        results += abcp_bitrix24.push_benchmarks(users=500, changed=100)
        results += abcp_bitrix24.ingest_benchmarks(count=50_000, baseline_count=2_000)
        results += kaspi_amocrm.push_benchmarks(orders=200, days=2)
        results += payments_amocrm.payments_benchmarks(quick=True)
        results += amocrm_sheets.sheets_benchmarks(quick=True)
        results += cms_orders.cms_benchmarks(quick=True)
    else:
        results += abcp_bitrix24.push_benchmarks()
        results += abcp_bitrix24.ingest_benchmarks()
        results += kaspi_amocrm.push_benchmarks()
        results += payments_amocrm.payments_benchmarks(quick=False)
        results += amocrm_sheets.sheets_benchmarks(quick=False)
        results += cms_orders.cms_benchmarks(quick=False)
    ok = report(results, Path(args.output))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
