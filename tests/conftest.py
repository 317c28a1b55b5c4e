"""Shared pytest hooks.

A failed test's report is written as soon as it fails, not only in the summary at the end: when CI stops the whole run
(its time limit), the summary is never printed, and the failures would show only as `F`s."""
import time

_T0 = time.time()


def pytest_runtest_logreport(report):
    if not report.failed: return
    import pytest
    tr = pytest_runtest_logreport.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None: return
    text = str(report.longrepr).splitlines()
    tail = text[-60:] if len(text) > 60 else text
    tr.write_line("")
    tr.write_line(f"FAILED {report.nodeid} ({report.when}, {report.duration:.1f}s, {time.time() - _T0:.0f}s into the run)", red=True)
    for line in (["  ..."] if len(text) > 60 else []) + tail: tr.write_line("  " + line)


def pytest_configure(config):
    pytest_runtest_logreport.config = config
