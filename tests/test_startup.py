"""A command's start-up: imports uncollected, collection resumed after (boneage.runtime.startup);
the train command composes before it imports the job's libraries."""

import gc
import subprocess
import sys

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


@pytest.mark.slow
def test_the_train_command_imports_no_job_library_until_it_runs_a_job():
    """`--help`, `--cfg`, a config error and a sweep's launching process import only the command:
    torch, Lightning and timm come with the job (boneage.train.run)."""
    libraries = ("torch", "pytorch_lightning", "timm")
    listed = f"import sys, boneage.train.command; print([m for m in {libraries} if m in sys.modules])"
    imported = subprocess.run([sys.executable, "-c", listed], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
