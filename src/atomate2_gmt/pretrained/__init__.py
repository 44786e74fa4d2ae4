"""pretrained layer (see docs/architecture.md)."""
