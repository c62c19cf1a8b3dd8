"""Pure-Python twins of the native core, operation for operation (no import of lakehouse).

- :mod:`parity.reference.playbook`: boost / inject arithmetic, role normalisation, the role gate;
- :mod:`parity.reference.index`: exact search with the cosine, euclidean and dot distances;
- :mod:`parity.reference.embed`: the hash embedder, written from docs/embed.md.

Small and obviously correct is the point: each is read against the contract or the doc, and
the parity probes (``python -m parity``) hold the real implementations to their answers.
"""
