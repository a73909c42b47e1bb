"""Benchmarks (`make bench`): request counts, wall time against rate-limit ideals, ingest speed and memory."""
