"""The payment webhook receiver: verifies, validates and commits platform payments to the inbox."""
