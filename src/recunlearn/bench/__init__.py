"""Benchmark protocols: run methods side by side under one protocol and write results (JSON + markdown)."""
