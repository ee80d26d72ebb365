"""Comparing methods: compare files → grids of ordinary runs (with learning-rate searches) → reports."""
