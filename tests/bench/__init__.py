"""Benchmarks: the gateway side by side with a direct aiokafka client, in the same run.

Run with ``python3 -m tests.bench.run [--quick]``; see BENCHMARKS.md for method and results.
No module here is named ``test_*.py``: pytest must never collect a benchmark, since timing
numbers depend on the machine and its load and belong in a report, not in a pass/fail test.
"""
