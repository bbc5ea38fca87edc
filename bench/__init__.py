"""Benchmarks: ``make bench`` (``python -m bench``) prints speed and memory as tables."""
