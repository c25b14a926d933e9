"""Label Studio config semantics and result building (no torch, no HTTP)."""
