"""jobs layer (see docs/architecture.md)."""
