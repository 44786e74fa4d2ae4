"""dfpt layer (see docs/architecture.md)."""
