"""Prefect flows over the stage functions of `coverhunter.pipeline` (no second implementation)."""
