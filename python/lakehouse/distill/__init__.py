"""Distillation (contract section 14): run logs -> evidence -> scored runs -> exports -> replay,
audit baselines and drift, and promotion of accepted outcomes back into the playbook.

Modules: :mod:`.scoring` (the scorer and the SFT firewall), :mod:`.drift` (PSI and scorer drift).
"""
