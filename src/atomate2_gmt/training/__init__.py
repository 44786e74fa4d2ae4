"""training layer (see docs/architecture.md)."""
