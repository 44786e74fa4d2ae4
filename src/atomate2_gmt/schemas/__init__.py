"""schemas layer (see docs/architecture.md)."""
