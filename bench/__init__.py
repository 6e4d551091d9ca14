"""Benchmarks: accuracy against the alternatives (bench.accuracy) and speed (bench.perf)."""
