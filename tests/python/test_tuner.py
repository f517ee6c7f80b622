"""The autotuner's logic with really compiled candidates, an injected workload and an
injected timer: no GPU needed. The GPU end-to-end tuning test is in test_tuner_gpu.py."""

import json

import pytest

import moejit
from moejit import _core
from moejit.tools.tuner import Progress, rank, tune_problem


class FakeWorkload:
    """Runs nothing; `failing` tiles raise like a failed launch, `wrong` ones miscompute."""

    def __init__(self, failing=(), wrong=()):
        self.failing, self.wrong, self.runs = set(failing), set(wrong), []

    def run(self, spec):
        tile = spec.tile.text()
        self.runs.append(tile)
        if tile in self.failing:
            raise RuntimeError("cuLaunchKernel failed: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES")

    def error(self, spec):
        self.run(spec)
        return 0.5 if spec.tile.text() in self.wrong else 1e-3


class ScriptedTimer:
    def __init__(self, workload, times, default=2.0):
        self.workload, self.times, self.default = workload, times, default

    def __call__(self, fn):
        fn()
        return self.times.get(self.workload.runs[-1], self.default)


@pytest.fixture
def runtime(tmp_path):
    return moejit.Runtime(database=moejit.jit.runtime.database_config(str(tmp_path / "cache")))


PROBLEM = dict(op="sdd", n=512, k=256, trans_b=True)


def test_search_space_is_pruned_and_starts_with_the_heuristic():
    problem = moejit.kernel_spec(**PROBLEM)
    space = _core.search_space(problem)
    assert space[0] == _core.heuristic_tile_config(problem)
    assert len({t.text() for t in space}) == len(space) > 10
    for tile in space:
        spec = _core.KernelSpec.parse(problem.text())
        spec.tile = tile
        spec.validate()   # every candidate is statically valid
        # sdd tiles fit the block, or pair two blocks of one block row (tile_n = 2 x block;
        # the pairs of one block column, tile_m = 2 x block, are explicit only).
        assert 128 % tile.tile_m == 0 and (128 % tile.tile_n == 0 or (tile.tile_n, tile.tile_m) == (256, 128))
    assert any(t.tile_n == 256 for t in space) == (problem.family.name == "wgmma")
    # A block of 64 leaves only tiles that fit it, or its row pairs.
    small = _core.search_space(moejit.kernel_spec(**PROBLEM, block_size=64))
    assert small and all(t.tile_m <= 64 and (t.tile_n <= 64 or (t.tile_n, t.tile_m) == (128, 64)) for t in small)


def test_search_space_holds_cluster_tiles_for_dsd_only():
    cluster_tiles = ["128x256x64.s4.w8x1.c2", "128x256x64.s3.w8x1.c2", "128x256x64.s4.w8x1.c2x1"]
    for problem in (moejit.kernel_spec("dsd", n=4096, k=114688),
                    moejit.kernel_spec("dsd", m=114688, n=4096, trans_a=True)):
        space = _core.search_space(problem)
        texts = [t.text() for t in space]
        # After every tile without clusters, in this order.
        assert texts[-len(cluster_tiles):] == cluster_tiles
        assert [t.cluster_ctas for t in space[-len(cluster_tiles):]] == [2, 2, 2]
        assert not any(t.cluster_ctas != 1 for t in space[:-len(cluster_tiles)])
    for problem in (moejit.kernel_spec(**PROBLEM), moejit.kernel_spec("dds", m=4096, n=114688),
                    moejit.kernel_spec("dsd", n=4096, k=114688, family="mma")):
        assert all(t.cluster_ctas == 1 for t in _core.search_space(problem))


def test_the_fastest_checked_candidate_wins_and_every_timing_is_recorded(runtime, caplog):
    caplog.set_level("DEBUG", logger="moejit")
    problem = moejit.kernel_spec(**PROBLEM)
    space = [t.text() for t in _core.search_space(problem)[:6]]
    workload = FakeWorkload()
    timer = ScriptedTimer(workload, {space[3]: 0.5, space[4]: 0.7})
    result = tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime, timer=timer,
                          max_candidates=6, compile_workers=2)
    assert result.best.tile == space[3] and result.best.ms == 0.5
    assert result.heuristic.tile == space[0] and result.speedup == pytest.approx(4.0)
    # The final (the winner and the heuristic) ranks ahead of the screen.
    assert [c.tile for c in rank(result.candidates)][:3] == [space[3], space[0], space[4]]
    assert all(c.registers > 0 for c in result.candidates)
    db = _core.KernelDb(runtime.core.database_paths[0])
    (entry,) = db.tunings()
    assert entry.problem == problem.problem_text() and entry.token_bucket == 512
    assert entry.best_tile == space[3] and entry.gpu_name == "FakeGPU"
    assert [c["tile"] for c in json.loads(entry.candidates_json)] == space
    # The candidates' kernels went to the kernel database too.
    assert len(db.entries()) == 6
    messages = [r.getMessage() for r in caplog.records if r.name == "moejit"]
    assert any(m.startswith(f"tuned sdd_nt_bf16_b128_n512_k256 at token bucket 512 on FakeGPU: {space[3]} 0.500 ms")
               for m in messages)
    assert sum(m.startswith("candidate ") for m in messages) == 6


class DriftingTimer:
    """A GPU clocking down as it heats: every call takes `drift` longer than the one before,
    so timing candidates one after the other favours the first."""

    def __init__(self, workload, true_ms, default=1.3, drift=0.03):
        self.workload, self.true_ms, self.default, self.drift, self.calls = workload, true_ms, default, drift, 0

    def __call__(self, fn):
        fn()
        ms = self.true_ms.get(self.workload.runs[-1], self.default) * (1 + self.drift * self.calls)
        self.calls += 1
        return ms


def test_the_final_reorders_what_clock_drift_misranked(runtime, capsys):
    import sys

    problem = moejit.kernel_spec(**PROBLEM)
    space = [t.text() for t in _core.search_space(problem)[:6]]
    true_ms = {space[0]: 1.0, space[2]: 0.97, space[3]: 0.95}

    # Without the final the screen's drift crowns the heuristic, timed first.
    workload = FakeWorkload()
    screen_only = tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime,
                               timer=DriftingTimer(workload, true_ms), max_candidates=6, record=False, finalists=1)
    assert screen_only.best.tile == space[0] and not any(c.finalist for c in screen_only.candidates)

    workload = FakeWorkload()
    timer = DriftingTimer(workload, true_ms)
    progress = Progress("sdd", 6, stream=sys.stdout)
    result = tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime, timer=timer,
                          max_candidates=6, progress=progress)
    # The finalists: the heuristic and the two screened within 15% of the fastest.
    finalists = [c.tile for c in result.candidates if c.finalist]
    assert finalists == [space[0], space[2], space[3]]
    assert timer.calls == 6 + 3 * 6   # the screen, then 6 rounds of 3
    assert result.best.tile == space[3]
    assert [c.tile for c in rank(result.candidates)][:3] == [space[3], space[2], space[0]]
    # The speedup compares the final's times, measured side by side.
    assert result.speedup == pytest.approx(1.0 / 0.95, rel=0.02)
    assert result.best.best_ms == result.best.final_ms != result.best.ms
    (entry,) = _core.KernelDb(runtime.core.database_paths[0]).tunings()
    assert entry.best_tile == space[3] and entry.best_ms == result.best.final_ms
    records = {r["tile"]: r for r in json.loads(entry.candidates_json)}
    assert records[space[3]]["final_ms"] == result.best.final_ms and "final_ms" not in records[space[1]]
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "sdd final: round 6/6 of 3 finalists"

    with pytest.raises(ValueError, match="finalists=0: expected at least 1"):
        tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime, timer=timer, finalists=0)


class SequenceTimer:
    """The screen's time of each tile, then its final timings in the order they are taken."""

    def __init__(self, workload, screen, final):
        self.workload, self.screen, self.final = workload, dict(screen), {t: list(v) for t, v in final.items()}
        self.screened = set()

    def __call__(self, fn):
        fn()
        tile = self.workload.runs[-1]
        if tile not in self.screened:
            self.screened.add(tile)
            return self.screen[tile]
        return self.final[tile].pop(0)


def test_the_final_ranks_by_time_relative_to_each_round(runtime):
    """A clock step between rounds moves both finalists: by absolute medians the default
    (A) would win, but B is faster in three rounds of four."""
    problem = moejit.kernel_spec(**PROBLEM)
    a, b = [t.text() for t in _core.search_space(problem)[:2]]
    workload = FakeWorkload()
    # Rounds alternate the order: A B, B A, A B, B A.
    timer = SequenceTimer(workload, {a: 1.0, b: 0.95}, {a: [1.0, 1.2, 1.4, 1.1], b: [0.9, 1.1, 1.3, 1.5]})
    result = tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime, timer=timer,
                          max_candidates=2, record=False)
    assert result.best.tile == b and result.heuristic.tile == a
    assert result.best.final_score == pytest.approx(0.96, abs=0.005)
    assert result.heuristic.final_score == pytest.approx(1.04, abs=0.005)
    # The speedup is the median of the rounds' time ratios, 1.08, consistent with the
    # choice (the absolute medians, 1.15 against 1.2 ms, point the other way).
    assert result.speedup == pytest.approx(1.084, abs=0.001)
    assert all(not v for v in timer.final.values())   # every final timing was taken


def test_the_default_stays_unless_the_final_beat_it_by_more_than_the_noise(runtime):
    """B is 1% faster than the default A in every round of the final: within
    KEEP_DEFAULT_MARGIN, so A stays (and is what the database records); 5% faster, B wins."""
    problem = moejit.kernel_spec(**PROBLEM)
    a, b = [t.text() for t in _core.search_space(problem)[:2]]
    assert moejit.tools.tuner.KEEP_DEFAULT_MARGIN == 0.02
    for b_ms, winner in ((0.99, a), (0.95, b)):
        workload = FakeWorkload()
        timer = SequenceTimer(workload, {a: 1.0, b: b_ms}, {a: [1.0, 1.1, 1.2, 1.1], b: [
            b_ms, 1.1 * b_ms, 1.2 * b_ms, 1.1 * b_ms]})
        result = tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime, timer=timer,
                              max_candidates=2)
        assert result.best.tile == winner, b_ms
        assert result.candidates[1].final_score < result.candidates[0].final_score   # B did win the final
        assert result.speedup == (1.0 if winner == a else pytest.approx(1 / b_ms))
        entries = _core.KernelDb(runtime.core.database_paths[0]).tunings()
        assert entries[-1].best_tile == winner


class FailingInFinal(FakeWorkload):
    """Launches of `tile` fail from its `after`-th run on (the screen runs each tile twice)."""

    def __init__(self, tile, after):
        super().__init__()
        self.tile, self.after = tile, after

    def run(self, spec):
        super().run(spec)
        if spec.tile.text() == self.tile and self.runs.count(self.tile) > self.after:
            raise RuntimeError("cuLaunchKernel failed: CUDA_ERROR_ILLEGAL_ADDRESS")


def test_a_finalist_failing_in_the_final_is_scored_unusable(runtime):
    problem = moejit.kernel_spec(**PROBLEM)
    space = [t.text() for t in _core.search_space(problem)[:4]]
    workload = FailingInFinal(space[2], after=2)
    timer = ScriptedTimer(workload, {space[0]: 1.0, space[1]: 1.1, space[2]: 0.9, space[3]: 1.05})
    result = tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime, timer=timer,
                          max_candidates=4, record=False)
    failed = {c.tile: c for c in result.candidates}[space[2]]
    assert not failed.usable and failed.failure == "final: cuLaunchKernel failed: CUDA_ERROR_ILLEGAL_ADDRESS"
    assert result.best.tile == space[0] and result.best.finalist


def test_without_a_usable_heuristic_the_final_runs_among_the_others(runtime):
    problem = moejit.kernel_spec(**PROBLEM)
    space = [t.text() for t in _core.search_space(problem)[:4]]
    workload = FakeWorkload(failing={space[0]})
    timer = ScriptedTimer(workload, {space[1]: 1.0, space[2]: 0.8, space[3]: 2.0})
    result = tune_problem(problem, workload, bucket=512, gpu_name="FakeGPU", runtime=runtime, timer=timer,
                          max_candidates=4, record=False)
    assert [c.tile for c in result.candidates if c.finalist] == [space[1], space[2]]   # 2.0 is past 25%
    assert result.best.tile == space[2] and not result.heuristic.usable and result.speedup == 1.0


def test_failing_and_wrong_candidates_are_scored_unusable(runtime):
    problem = moejit.kernel_spec(**PROBLEM)
    space = [t.text() for t in _core.search_space(problem)[:5]]
    workload = FakeWorkload(failing={space[1]}, wrong={space[2]})
    timer = ScriptedTimer(workload, {space[1]: 0.1, space[2]: 0.1, space[4]: 1.0})
    result = tune_problem(problem, workload, bucket=64, gpu_name="FakeGPU", runtime=runtime, timer=timer,
                          max_candidates=5, record=False)
    by_tile = {c.tile: c for c in result.candidates}
    assert not by_tile[space[1]].usable and by_tile[space[1]].failure.startswith("launch: cuLaunchKernel failed")
    assert not by_tile[space[2]].usable and by_tile[space[2]].failure == "check: relative error 5.00e-01"
    assert result.best.tile == space[4]


def test_no_usable_candidate_is_an_error(runtime):
    problem = moejit.kernel_spec(**PROBLEM)
    space = [t.text() for t in _core.search_space(problem)[:3]]
    with pytest.raises(RuntimeError, match="no usable candidate for op=sdd"):
        tune_problem(problem, FakeWorkload(failing=space), bucket=64, gpu_name="FakeGPU", runtime=runtime,
                     timer=lambda fn: fn() or 1.0, max_candidates=3, record=False)


def test_untuned_buckets_use_the_nearest_tuned_one(runtime):
    problem = moejit.kernel_spec(**PROBLEM)
    for bucket, tile in [(256, "64x128x32.s3.w2x2"), (4096, "128x128x32.s4.w2x2")]:
        entry = _core.TuningEntry()
        entry.problem, entry.target, entry.gpu_name = problem.problem_text(), "sm_90a", "FakeGPU"
        entry.token_bucket, entry.best_tile, entry.best_ms, entry.candidates_json = bucket, tile, 1.0, "[]"
        assert runtime.core.record_tuning(entry)
    assert runtime.core.tuned_tile(problem, "FakeGPU", 256).text() == "64x128x32.s3.w2x2"
    assert runtime.core.tuned_tile(problem, "FakeGPU", 512).text() == "64x128x32.s3.w2x2"
    assert runtime.core.tuned_tile(problem, "FakeGPU", 2048).text() == "128x128x32.s4.w2x2"
    assert runtime.core.tuned_tile(problem, "FakeGPU", 1 << 20).text() == "128x128x32.s4.w2x2"
    assert runtime.core.tuned_tile(problem, "OtherGPU", 256) is None
    other = moejit.kernel_spec("sdd", n=1024, k=256, trans_b=True)
    assert runtime.core.tuned_tile(other, "FakeGPU", 256) is None
    assert _core.nearest_bucket([], 256) == -1


def test_token_buckets():
    assert _core.token_bucket(16384, 8) == 2048          # mixtral-8x7b, 8192 tokens, top-2
    assert _core.token_bucket(131072, 128) == 1024       # qwen3-30b-a3b
    assert _core.token_bucket(3000, 4) == 1024           # 750 per expert rounds to 2^10
    assert _core.token_bucket(0, 4) == 1
    with pytest.raises(moejit.SpecError, match="experts=0"):
        _core.token_bucket(10, 0)


def test_ops_pick_the_tuned_tile_and_warn_once_when_untuned(runtime, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "FakeGPU")
    problem = moejit.kernel_spec(**PROBLEM, family="mma")
    with pytest.warns(moejit.jit.runtime.MoejitWarning, match="was never tuned on FakeGPU"):
        assert runtime.tuned_spec(problem, 0, 256).tile == problem.tile
    entry = _core.TuningEntry()
    entry.problem, entry.target, entry.gpu_name = problem.problem_text(), "sm_90a", "FakeGPU"
    entry.token_bucket, entry.best_tile, entry.best_ms, entry.candidates_json = 512, "64x128x32.s3.w2x2", 1.0, "[]"
    assert runtime.record_tuning(entry)
    # The runtime that looked the problem up before sees the result at once...
    assert runtime.tuned_spec(problem, 0, 256).tile.text() == "64x128x32.s3.w2x2"
    # ... and so does a later process on the same cache.
    fresh = moejit.Runtime(database=moejit.jit.runtime.database_config(runtime.core.database_paths[0].rsplit("/", 1)[0]))
    assert fresh.tuned_spec(problem, 0, 256).tile.text() == "64x128x32.s3.w2x2"
    # A tuning records a tile, not a family: the same problem in the wgmma family cannot
    # run that mma tile and keeps its heuristic one.
    hopper = moejit.kernel_spec(**PROBLEM, family="wgmma")
    assert hopper.problem_text() == problem.problem_text()
    assert runtime.tuned_spec(hopper, 0, 256) == hopper


def test_progress_prints_plain_lines_when_piped(capsys):
    import sys

    progress = Progress("sdd", 20, stream=sys.stdout)
    for i in range(20):
        progress.step(f"tile {i}")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [l for l in lines if l.startswith("sdd [")] and len(lines) == 2
    assert lines[-1].endswith("20/20 tile 19")
