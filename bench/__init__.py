"""Benchmarks: standalone scripts (`.venv/bin/python bench/<name>.py`); `make bench` runs them all."""
