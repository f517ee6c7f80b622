"""measure_systems without a GPU: the order it times systems in, how it aggregates rounds,
and what it records for systems that fail."""

import pytest

from moejit.tools.bench.measurement import Trial, measure_systems


class ScriptedMeasurer:
    """Times a call as the next value of its system's script, and records the order."""

    def __init__(self, scripts):
        self.scripts = {name: list(times) for name, times in scripts.items()}
        self.order = []
        self.peaks = []

    def time_ms(self, fn):
        name = fn()
        self.order.append(name)
        return self.scripts[name].pop(0)

    def peak_bytes(self, fn):
        self.peaks.append(fn())
        return 1000

    def settings(self):
        return {"timer": "scripted"}


def _run(name):
    return lambda: name


def test_rounds_interleave_the_systems_and_report_the_median_round():
    measurer = ScriptedMeasurer({"a": [3.0, 1.0, 2.0], "b": [4.0, 4.0, 10.0], "c": [1.0, 1.0, 1.0]})
    after = []
    trials = [Trial("a", _run("a"), after=lambda: after.append("a")), Trial("b", _run("b")), Trial("c", _run("c"))]
    results = measure_systems(trials, useful_flops=2 * 10**12, measurer=measurer, rounds=3)
    # Each round starts one system later than the one before.
    assert measurer.order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    a, b, c = results
    assert (a.ms, b.ms, c.ms) == (2.0, 4.0, 1.0)
    assert a.round_ms == [3.0, 1.0, 2.0] and b.round_ms == [4.0, 4.0, 10.0]
    assert a.tflops == pytest.approx(2 * 10**12 / 2e-3 / 1e12)
    assert measurer.peaks == ["a", "b", "c"] and a.peak_memory_bytes == 1000
    assert after == ["a"] * 4   # after each of its three timings and its peak-memory call
    assert "rounds 1.000-3.000 ms" in a.status()


def test_peak_memory_counts_what_a_call_adds_to_the_state_it_keeps():
    # A training step allocates its parameters' gradients on the first call and keeps
    # them; `after` frees them after each timing (zero_grad). The peak is what one call
    # adds with the gradients in place: 10, not the first call's 110.
    state = {"grads": False}

    def step():
        added = 0 if state["grads"] else 100
        state["grads"] = True
        return added + 10

    class AllocationMeasurer:
        def time_ms(self, fn):
            fn()
            return 1.0

        def peak_bytes(self, fn):
            return fn()

    (result,) = measure_systems([Trial("a", step, after=lambda: state.update(grads=False))], 10**12,
                                AllocationMeasurer())
    assert result.peak_memory_bytes == 10
    assert state["grads"] is False   # and `after` still runs after the peak-memory call


def test_one_round_times_each_system_once_and_keeps_no_rounds():
    measurer = ScriptedMeasurer({"a": [2.0], "b": [5.0]})
    a, b = measure_systems([Trial("a", _run("a")), Trial("b", _run("b"))], 10**12, measurer)
    assert measurer.order == ["a", "b"]
    assert (a.ms, b.ms) == (2.0, 5.0) and a.round_ms == [] and b.round_ms == []
    assert a.status() == "2.000 ms, 500 TFLOP/s"


def test_failures_are_recorded_and_the_others_still_timed():
    def bad_check():
        raise RuntimeError("CUDA out of memory\nmore lines")

    calls = {"b": 0}

    def flaky():
        calls["b"] += 1
        if calls["b"] == 2:
            raise ValueError("unsupported layout")
        return "b"

    measurer = ScriptedMeasurer({"a": [1.0, 1.0], "b": [2.0, 2.0], "c": [3.0, 3.0]})
    trials = [Trial("a", _run("a"), check=lambda: {"out": 0.5e-3}), Trial("b", flaky),
              Trial("c", _run("c"), check=bad_check)]
    a, b, c = measure_systems(trials, 10**12, measurer, rounds=2)
    assert a.ms == 1.0 and a.rel_error == pytest.approx(0.5e-3) and a.passed
    assert b.ms is None and b.note == "failed to run: ValueError: unsupported layout" and b.round_ms == []
    assert c.ms is None and c.note == "failed to check: RuntimeError: CUDA out of memory"
    assert "c" not in measurer.order and b.status() == b.note


def test_rounds_must_be_positive():
    with pytest.raises(ValueError, match="rounds=0: expected at least one round"):
        measure_systems([Trial("a", _run("a"))], 1, ScriptedMeasurer({"a": []}), rounds=0)
