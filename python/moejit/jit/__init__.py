"""The JIT runtime: kernel specs, NVRTC compiles, the kernel database, inspection and baking."""
