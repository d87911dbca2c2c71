"""``python -m coverhunter`` is the ``coverhunter`` command."""
from coverhunter.cli import main

main()
