"""Alerts to the operator: when to alert (`rules`) and the channels that carry them (`notifier`)."""
