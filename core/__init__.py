"""The shared ground every app stands on; it knows no app (docs/architecture.md)."""
