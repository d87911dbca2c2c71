"""DVC stage `extract`: log-CQT features of every validated recording.

The work is `coverhunter.pipeline.extract`; this entry point is `coverhunter extract`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["extract", *sys.argv[1:]])
