"""Prefect flows over the stage functions in `stages/` (no second implementation)."""
