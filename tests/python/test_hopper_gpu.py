"""The wgmma family on a Hopper GPU: every variant of hopper_cases.py against a float32
reference, each group of variants in a child process so that a hang fails its variants
only. Skipped without a GPU of compute capability 9.0.

MOEJIT_HOPPER_WORKERS sets how many children run at once (default 4); MOEJIT_HOPPER_MATCH
(shell patterns, comma-separated) narrows the variants, for example to
'dsd_*@*c2x1,sdd_nt_*' while working on one schedule.
"""

import fnmatch
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import hopper_cases  # noqa: E402

from conftest import CUDA  # noqa: E402


def _hopper() -> bool:
    if not CUDA:
        return False
    import torch

    return torch.cuda.get_device_capability(0) == (9, 0)


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _hopper(), reason="needs a Hopper GPU (sm_90a)")]


def _variants() -> list[str]:
    names = hopper_cases.variant_names() + hopper_cases.schedule_variant_names()
    patterns = [p for p in os.environ.get("MOEJIT_HOPPER_MATCH", "").split(",") if p]
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return names


@pytest.fixture(scope="module")
def results():
    workers = int(os.environ.get("MOEJIT_HOPPER_WORKERS", "4"))
    return hopper_cases.run_isolated(_variants(), timeout=120.0, workers=workers)


@pytest.mark.parametrize("variant", _variants())
def test_variant_matches_reference(results, variant):
    status, report = results[variant]
    assert status == "PASS", f"{variant}: {status}\n{report}"


def test_wgmma_kernel_uses_hgmma_and_tma():
    import moejit

    runtime = moejit.default_runtime()
    spec = moejit.kernel_spec("dsd", n=4096, k=114688, target=runtime.target_for(0), family="wgmma")
    info = moejit.inspect(spec.text(), runtime=runtime)
    if not info.sass:
        pytest.skip(f"no disassembler: {info.sass_note}")
    for instruction in ("HGMMA", "UTMALDG", "UTMASTG"):
        assert instruction in info.sass, f"{spec.short_name()}: no {instruction} in its SASS"
