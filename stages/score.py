"""DVC stage `score`: score a model on any manifest (not a DVC stage; coverhunter score).

The work is `coverhunter.pipeline.score`; this entry point is `coverhunter score`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["score", *sys.argv[1:]])
