"""Operator tools behind the CLI: inspect an account, authorize amoCRM, trace and re-drive records."""
