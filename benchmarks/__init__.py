"""Benchmarks with their own make targets (never part of the test suite)."""
