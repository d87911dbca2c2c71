"""One thin entry point per DVC stage (`python -m stages.NAME`): each is the `coverhunter`
command of the same name, whose work is in `coverhunter.pipeline`."""
