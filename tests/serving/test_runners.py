"""Where a server runs a call: inline while the function is cheap, on the model pool while it is not."""

from __future__ import annotations

import asyncio
import threading
import time

from medfn.serving.runners import CostAwareRunner


def where(spend_s: float = 0.0) -> str:
    """Burns `spend_s` of this thread's CPU, then names the thread it ran on."""
    started = time.thread_time()
    while time.thread_time() - started < spend_s:
        pass
    return threading.current_thread().name


def calls(runner: CostAwareRunner, *spends: float) -> list[str]:
    async def run_all() -> list[str]:
        return [await runner(where, spend) for spend in spends]

    return asyncio.run(run_all())


def test_a_function_never_seen_runs_on_the_pool_then_inline_once_it_proved_cheap() -> None:
    runner = CostAwareRunner(workers=2, inline_below_s=0.001)
    first, second, third = calls(runner, 0.0, 0.0, 0.0)
    assert first.startswith("medfn-model")
    assert second == third == threading.main_thread().name
    assert runner.unit_cost_s(where) is not None and runner.unit_cost_s(where) < 0.001


def test_an_inline_call_lets_the_loop_take_a_turn_before_it_runs() -> None:
    # Work the loop already holds (here: a callback; in a server: reading the sockets that
    # became readable) comes before the inline call, not after it.
    runner = CostAwareRunner(workers=2, inline_below_s=0.001)
    order: list[str] = []

    def model() -> None:
        order.append("model" if threading.current_thread() is threading.main_thread() else "model, on the pool")

    async def scenario() -> None:
        await runner(model)  # first call: on the pool, and now known to be cheap
        order.clear()
        asyncio.get_running_loop().call_soon(order.append, "turn")
        await runner(model)

    asyncio.run(scenario())
    assert order == ["turn", "model"]


def test_a_costly_function_stays_on_the_pool() -> None:
    runner = CostAwareRunner(workers=2, inline_below_s=0.001)
    assert all(name.startswith("medfn-model") for name in calls(runner, 0.005, 0.005, 0.005))
    assert runner.unit_cost_s(where) >= 0.001  # type: ignore[operator]


def test_a_cheap_function_that_turns_costly_moves_to_the_pool_and_back() -> None:
    runner = CostAwareRunner(workers=2, inline_below_s=0.001)
    # learns it is cheap, then one 30 ms call (inline: the estimate said cheap) moves it out
    names = calls(runner, 0.0, 0.0, 0.030, 0.0)
    assert names[1] == names[2] == threading.main_thread().name
    assert names[3].startswith("medfn-model")
    # cheap calls on the pool bring the estimate back under the bar
    names = calls(runner, *[0.0] * 30)
    assert names[-1] == threading.main_thread().name


def test_bound_methods_of_different_objects_are_costed_apart() -> None:
    class Model:
        def __init__(self, spend_s: float) -> None:
            self.spend_s = spend_s

        def run(self) -> str:
            return where(self.spend_s)

    cheap, costly = Model(0.0), Model(0.005)
    runner = CostAwareRunner(workers=2, inline_below_s=0.001)

    async def run_all() -> list[str]:
        return [await runner(model.run) for model in (cheap, costly, cheap, costly)]

    names = asyncio.run(run_all())
    assert names[2] == threading.main_thread().name
    assert names[3].startswith("medfn-model")


def test_a_call_that_waits_on_a_device_always_runs_on_the_pool() -> None:
    runner = CostAwareRunner(workers=2, inline_below_s=0.001)

    def waits() -> str:
        time.sleep(0.005)  # as a GPU run: the thread waits, its CPU time stays near zero
        return threading.current_thread().name

    async def run_all() -> list[str]:
        return [await runner(waits, waits=True) for _ in range(3)]

    assert all(name.startswith("medfn-model") for name in asyncio.run(run_all()))
    assert runner.unit_cost_s(waits) < 0.001  # type: ignore[operator]  # what "inline" would have been


def test_a_call_much_larger_than_the_cheap_ones_goes_to_the_pool() -> None:
    """The estimate is per unit of size: 1,000 units of a 10 us-per-unit function is 10 ms."""
    runner = CostAwareRunner(workers=2, inline_below_s=0.001)

    async def run_all() -> list[str]:
        names = [await runner(where, 0.00001, size=1) for _ in range(3)]
        names.append(await runner(where, 0.00001, size=1000))  # expected 10 ms: too long for the loop
        return names

    names = asyncio.run(run_all())
    assert names[1] == names[2] == threading.main_thread().name
    assert names[3].startswith("medfn-model")
