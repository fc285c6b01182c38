"""Simulated participants that drive a running orchestration from outside, as a
person would: used by ``demo --learning``, the benchmarks and the tests."""
