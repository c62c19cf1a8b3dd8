"""What the system remembers (tests under tests/memory): pathway memory, observed operations, workflows.

- :mod:`.pathway`: pathwayd's trace memory (add, search, history, revisions) on an append log.
- :mod:`.observer`: observerd's witnessed operations and inbox, with their statistics.
- :mod:`.workflow`: observerd's workflow runner (nodes, inputs, the distill nodes).
"""
