"""Benchmark scripts (not tests): `python -m peftkit.bench.<name>`. Each prints ratios against a baseline measured in the same run."""
