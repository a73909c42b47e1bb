"""Alerts: not a flow (no `plugin.py`); `load_from_defs_folder` picks up the sensor in `sensors.py`."""
