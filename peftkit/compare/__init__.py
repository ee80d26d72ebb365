"""Comparing runs: a compare grid (methods × tasks × seeds) expanded, executed cell by cell, and reported."""
