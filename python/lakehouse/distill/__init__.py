"""Distillation (contract section 14): run logs -> evidence -> scored runs -> exports -> replay,
audit baselines and drift, and promotion of accepted outcomes back into the playbook.

Modules, in the order of the loop (docs/distillation.md has the whole story):

* :mod:`.evidence`  the materializer: source JSONL -> ``EvidenceRecord`` v1, idempotent
* :mod:`.scoring`   the scorer and the SFT firewall; :mod:`.scored` the scored-runs stage
* :mod:`.export`    SFT / RAG / preference exports behind the firewall
* :mod:`.replay`    retrieve -> context -> model -> validate -> ``replay_run.v1``
* :mod:`.audit`     audit baselines and the drift table; :mod:`.drift` PSI and scorer drift
* :mod:`.promote`   accepted outcomes -> playbook entries
* :mod:`.modes`     observerd's ``distill.*`` workflow nodes; :mod:`.cli` ``lakehouse distill``
* :mod:`.common`    the data root's layout, receipts, JSONL helpers
"""
