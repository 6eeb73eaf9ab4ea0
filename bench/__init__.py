"""Benchmarks of vseam-pl, run from the repository root as modules (`python -m bench.scale`, `python -m
bench.training`, ...), so they import this checkout's `vseam_pl` and each other (`bench._env`, `bench.training`)
without touching `sys.path`. Not installed with the package."""
