import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


CUDA = _cuda_available()

requires_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
