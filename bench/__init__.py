"""Proof under load: the local system harness, the chaos run and the benchmarks (`make bench`)."""
