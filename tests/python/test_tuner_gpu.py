"""The tuner end to end on a GPU: a small MoE shape, real data, real timing."""

import json

import pytest

import moejit
from moejit import _core
from moejit.jit.layer_kernels import layer_kernels
from moejit.zoo import ModelShape

from conftest import requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]


def test_tune_a_small_shape_end_to_end(tmp_path):
    import torch

    from moejit.tools.measure_layer import LayerData, RoleWorkload
    from moejit.tools.timing import median_ms
    from moejit.tools.tuner import tune_problem

    runtime = moejit.Runtime(database=moejit.jit.runtime.database_config(str(tmp_path / "cache")))
    shape = ModelShape("tiny", 512, 1024, 4, 2, 2000, "gelu", False)
    target = runtime.target_for(0)
    gpu = torch.cuda.get_device_name(0)
    data = LayerData(shape, runtime=runtime, verbose=False)
    for kernel, role in zip(layer_kernels(shape, target=target), ["sdd", "dsd", "dsd_t"]):
        result = tune_problem(kernel.spec, RoleWorkload(data, role), bucket=data.bucket, gpu_name=gpu,
                              runtime=runtime, timer=lambda fn: median_ms(fn, warmup=1, reps=3),
                              max_candidates=4)
        assert result.best.usable and result.best.best_ms > 0
        # The winner is the final's best, or with a single usable candidate the screen's.
        finalists = [c for c in result.candidates if c.finalist]
        if finalists:
            assert result.best.final_score == min(c.final_score for c in finalists)
            assert result.heuristic.finalist or not result.heuristic.usable
        else:
            assert result.best.ms == min(c.ms for c in result.candidates if c.usable)
        # The ops now pick the winner for this GPU and bucket.
        tuned = runtime.tuned_spec(kernel.spec, 0, data.bucket)
        assert tuned.tile.text() == result.best.tile
        # ... and the tuned kernel computes the right thing.
        assert data.error(role, tuned.tile) < 2e-2
    db = _core.KernelDb(runtime.core.database_paths[0])
    tunings = db.tunings()
    assert len(tunings) == 3 and {t.gpu_name for t in tunings} == {gpu}
    assert all(len(json.loads(t.candidates_json)) == 4 for t in tunings)
