"""One thin entry point per DVC stage (`python -m stages.NAME`); the Prefect flows call the
same `run` functions."""
