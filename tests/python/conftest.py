import os
import tempfile

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


CUDA = _cuda_available()

requires_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def pytest_configure(config):
    # Tests never touch the user's kernel cache: every run gets an empty one of its own
    # (tests that need their own layers set MOEJIT_CACHE_DIR themselves).
    os.environ["MOEJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="moejit-test-cache-")
