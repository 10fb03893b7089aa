"""Benchmarks: `make bench` runs them all (python -m bench); each is also `python -m bench.<name>`.

Every benchmark prints its figures and the ratio to a baseline measured in the same run, and is
bounded in time.
"""
