"""Benchmarks: latency, load and quality of the services (`python -m bench.<name>`)."""
