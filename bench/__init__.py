"""Benchmarks, run from the repository's root as modules: `python -m bench.hotpath --help`.

They need the `bench` extra (`pip install -e ".[bench]"`: psutil for process CPU times).
"""
