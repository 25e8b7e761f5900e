"""medfn.coldstart: the collector is off during a start-up block, and what it made is frozen afterwards."""

import gc

import pytest

from medfn.coldstart import collector_paused


@pytest.fixture(autouse=True)
def _restore_collector():
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()  # give this test process's objects back to the collector
    gc.enable() if was_enabled else gc.disable()


def test_collector_is_off_inside_and_back_on_after():
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_objects_made_during_start_up_are_frozen():
    gc.enable()
    gc.unfreeze()
    with collector_paused():
        made = [{"start-up": i} for i in range(1000)]
    assert gc.get_freeze_count() >= len(made)
    assert not any(made is o for o in gc.get_objects())  # frozen objects are out of every generation


def test_collector_left_off_when_it_was_off_and_after_an_error():
    gc.disable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("model failed to load")
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("model failed to load")
    assert gc.isenabled()
