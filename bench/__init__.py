"""Benchmarks run by `make bench`; results go to docs/performance.md."""
