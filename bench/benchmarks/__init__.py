"""Side-by-side benchmarks: run as ``python -m bench.benchmarks.<name>`` from the repository root."""
