"""Parity tooling: a pure-Python reference runtime, fixtures that encode the reference
contract, and probes that hold two runtimes to the same answers (docs/parity.md)."""
