"""unetbench's harness: training, search, profiling, results and reports."""

__version__ = "0.1.0"
