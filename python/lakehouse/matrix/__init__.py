"""matrixd's library: retrieval and merge, the metadata filter, the playbook loop (record,
boost, inject, role and judge gates), relevance, the downgrade gate, the corpus builder.

Modules: :mod:`.retrieve` (``/matrix/search``), :mod:`.playbooks` (record / bulk),
:mod:`.filter`, :mod:`.judge`, :mod:`.relevance`, :mod:`.downgrade`, :mod:`.corpus`,
:mod:`.types` (request bodies), :mod:`.context` (upstream clients and settings). The
arithmetic itself is :mod:`lakehouse.matrix.ranking` (native core). docs/matrix.md is the guide.
"""
