"""Benchmarks run by `make bench` against the bundled simulators (not part of `make test`)."""
