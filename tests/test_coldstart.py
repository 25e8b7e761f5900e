"""medfn.coldstart: the collector paused during start-up and frozen after; SnapStart hooks, with a
stand-in for Lambda's `snapshot_restore_py` module."""

from __future__ import annotations

import gc
import random
import sys
import types

import numpy as np
import pytest

from medfn import coldstart
from medfn.coldstart import collector_paused
from medfn.serving.store import S3Store


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


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    hooks: dict[str, list] = {"before": [], "after": []}
    module = types.ModuleType("snapshot_restore_py")
    module.register_before_snapshot = lambda fn, *args: hooks["before"].append((fn, args))  # type: ignore[attr-defined]
    module.register_after_restore = lambda fn, *args: hooks["after"].append((fn, args))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", module)
    return hooks


def test_no_runtime_no_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails, as off Lambda
    assert coldstart.register_snapstart_hooks([]) is False


def test_restore_reseeds_and_reconnects(fake_runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = S3Store("s3://bucket/models", tmp_path, client=object())
    assert coldstart.register_snapstart_hooks([store, "not a client"]) is True
    [(before, before_args)] = fake_runtime["before"]
    [(after, after_args)] = fake_runtime["after"]
    assert before_args == after_args == ([store],)

    before(*before_args)
    assert store._client is None  # no pooled sockets inside the snapshot
    store._client = object()  # something connected again before the snapshot was taken
    random.seed(7)
    np.random.seed(7)
    snapshot_state = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    after(*after_args)  # two restored environments must not draw the same numbers
    assert (random.random(), np.random.random()) != snapshot_state
    assert store._client is None


def test_handler_registers_hooks_at_init(fake_runtime) -> None:  # type: ignore[no-untyped-def]
    from medfn.lambda_handler import make_handler
    from tests.conftest import REPO

    make_handler(str(REPO / "functions" / "scan_classifier" / "handler.py"))
    [(_, args)] = fake_runtime["after"]
    assert args == ([],)  # the repo's local model store holds no connection to renew
