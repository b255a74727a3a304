"""Benchmarks: throughput of train, frozen, inference, serving and input-pipeline steps."""
