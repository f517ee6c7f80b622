"""Where the package's data and the CUDA libraries it opens at run time live."""

from __future__ import annotations

import glob
import importlib.util
import os

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def templates_dir() -> str:
    """The directory NVRTC gets with -I: it holds moejit/*.cuh.

    MOEJIT_TEMPLATES_DIR overrides it (for working on the templates without reinstalling).
    """
    return os.environ.get("MOEJIT_TEMPLATES_DIR", os.path.join(_PACKAGE_DIR, "templates"))


def nvrtc_wheels() -> list[str]:
    """libnvrtc files shipped by pip wheels (nvidia-cuda-nvrtc, as PyTorch installs it).

    The C++ side tries them after $MOEJIT_NVRTC and every CUDA toolkit it finds
    (_core.nvrtc_search_order says the whole order and why), so installing torch does not
    change the NVRTC of a machine that has a toolkit; a pip-only environment uses them.
    """
    found: list[str] = []
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return found
    for root in spec.submodule_search_locations:
        for pattern in ("cu13/lib/libnvrtc.so.*", "cuda_nvrtc/lib/libnvrtc.so.*", "cu12/lib/libnvrtc.so.*"):
            for path in sorted(glob.glob(os.path.join(root, pattern)), reverse=True):
                if "builtins" not in os.path.basename(path) and "alt" not in os.path.basename(path):
                    found.append(path)
    return found


def cache_file(cache_dir: str) -> str:
    """The user kernel cache inside a cache directory."""
    return os.path.join(cache_dir, "kernels.sqlite")


def packaged_databases() -> list[str]:
    """The kernel database shipped inside the package, when this install has one."""
    path = os.path.join(_PACKAGE_DIR, "kernels", "kernels.sqlite")
    return [path] if os.path.exists(path) else []
