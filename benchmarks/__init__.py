"""Benchmarks: each compares this project against an anchor measured in the same run."""
