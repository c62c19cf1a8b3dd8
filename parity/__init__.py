"""Parity tooling: a pure-Python reference runtime and helpers that compare two runtimes."""
