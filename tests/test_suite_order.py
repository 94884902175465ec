"""The test suite's own order: the longest files first, from what the last run measured."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import pytest_collection_modifyitems


def item(file: str, slow: bool = False, seconds: float | None = None) -> SimpleNamespace:
    """A collected test of `file`, marked slow (with its reckoned seconds) or not."""
    mark = (pytest.mark.slow(seconds=seconds) if seconds else pytest.mark.slow).mark if slow else None
    return SimpleNamespace(path=Path(file), get_closest_marker=lambda name: mark if name == "slow" else None, name=file)


def config(measured: dict[str, float]) -> SimpleNamespace:
    cache = SimpleNamespace(get=lambda key, default: measured)
    return SimpleNamespace(cache=cache, option=SimpleNamespace(markexpr=""))


def test_files_run_longest_first_by_the_last_runs_seconds_keeping_each_files_order():
    items = [item("test_a.py"), item("test_b.py"), item("test_b.py"), item("test_c.py")]
    pytest_collection_modifyitems(config({"test_a.py": 1.0, "test_b.py": 90.0, "test_c.py": 30.0}), items)
    assert [i.path.name for i in items] == ["test_b.py", "test_b.py", "test_c.py", "test_a.py"]


def test_before_any_run_a_file_with_more_slow_tests_runs_first():
    items = [item("test_a.py"), item("test_b.py", slow=True), item("test_c.py", slow=True), item("test_c.py", True)]
    pytest_collection_modifyitems(config({}), items)
    assert [i.path.name for i in items] == ["test_c.py", "test_c.py", "test_b.py", "test_a.py"]


def test_before_any_run_a_slow_test_reckoned_long_outweighs_several_ordinary_ones():
    items = [item("test_b.py", slow=True), item("test_b.py", slow=True), item("test_c.py", slow=True, seconds=400)]
    pytest_collection_modifyitems(config({}), items)
    assert [i.path.name for i in items] == ["test_c.py", "test_b.py", "test_b.py"]
