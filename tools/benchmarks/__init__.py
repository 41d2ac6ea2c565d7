"""Benchmark sections for tools/benchmark.py."""
