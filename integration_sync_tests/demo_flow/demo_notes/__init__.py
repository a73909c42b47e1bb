"""Demo flow: notes in a list → an in-memory target (asset group `demo_notes`)."""
