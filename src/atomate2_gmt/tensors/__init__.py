"""tensors layer (see docs/architecture.md)."""
