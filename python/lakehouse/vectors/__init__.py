"""Vector indexes: the native core's facade and vectord's library (tests under tests/native and
tests/services/test_vectord*).

- :mod:`.index`: ``VectorIndex``, the Python facade of the C++ HNSW core (SPEC section 3):
  input checks before any change, chunked dtype conversion, the save coalescer.
- :mod:`.registry`: named indexes for vectord: parameters, persistence through the object
  store, merge, and replay of the write-ahead log.
- :mod:`.wal`: the write-ahead log: checksummed frames, group commit, rotation and
  truncation at the snapshot cut.
"""
