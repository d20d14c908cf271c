"""KernKoa's benchmarks: real uWSGI servers on loopback, driven by ``wrk``.

Run them with ``make bench`` (or ``python -m bench.run --help``); the latest
figures are in ``bench/RESULTS.md``.
"""
