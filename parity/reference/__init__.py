"""Pure-Python twins of the native core, operation for operation (no lakehouse._native)."""
