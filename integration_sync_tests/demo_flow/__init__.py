"""A tiny demonstration flow (`demo_notes/`) that is never part of the product: `test_adding_a_flow`
drops it into a copy of the package's `defs/` folder and shows that nothing else has to change."""
