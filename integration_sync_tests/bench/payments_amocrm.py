"""Platform payments → amoCRM benchmarks (``--only payments_amocrm``): the webhook receiver under load,
amoCRM requests per payment, and webhook → lead latency with the Dagster daemon running."""

from __future__ import annotations

from integration_sync_tests.bench.payments_push import requests_per_payment, webhook_latency
from integration_sync_tests.bench.payments_receiver import receiver_benchmarks
from integration_sync_tests.bench.results import Result


def payments_benchmarks(quick: bool = False) -> list[Result]:
    results = receiver_benchmarks(seconds=3 if quick else 10)
    results += requests_per_payment(batch=20 if quick else 50, singles=2 if quick else 5)
    results += webhook_latency(count=5 if quick else 20)
    return results
