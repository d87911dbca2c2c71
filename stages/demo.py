"""DVC stage `demo`: build the embedded demo catalogue.

The work is `coverhunter.pipeline.demo`; this entry point is `coverhunter demo`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
