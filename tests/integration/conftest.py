"""Integration-test reporting: the schemathesis run's counts at the end of every run.

pytest shows a passing test's output only with ``-s``; CI logs should still say how much the
fuzzer did (operations, cases, failures), so test_schemathesis.py files its counts under
:data:`FUZZ_SUMMARY` and they are printed here, pass or fail.
"""

from __future__ import annotations

import pytest

FUZZ_SUMMARY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(FUZZ_SUMMARY, [])
    if lines:
        terminalreporter.section("schemathesis against a live gateway")
        for line in lines:
            terminalreporter.write_line(line)
