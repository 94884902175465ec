"""A command's start-up (boneage.runtime.startup): imports uncollected, collection resumed after."""

import gc

import pytest

from boneage.runtime.startup import collector_paused


@pytest.fixture
def unfrozen():
    """collector_paused freezes this test process's objects; they go back to the collector after."""
    yield
    gc.unfreeze()


def test_imports_run_uncollected_and_collection_resumes_with_what_they_made_frozen(unfrozen):
    with collector_paused():
        assert not gc.isenabled()
        made_at_start_up = ["module state"]
    assert gc.isenabled()
    assert not any(tracked is made_at_start_up for tracked in gc.get_objects())  # frozen: collections skip it
    made_after = ["run state"]
    assert any(tracked is made_after for tracked in gc.get_objects())


def test_collection_resumes_after_a_start_up_that_failed(unfrozen):
    with pytest.raises(ImportError), collector_paused():
        raise ImportError("a module that cannot be imported")
    assert gc.isenabled()


def test_a_pause_inside_another_leaves_the_outer_one_paused(unfrozen):
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
