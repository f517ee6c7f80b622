"""The command line, the autotuner, the doctor and the benchmarks."""
