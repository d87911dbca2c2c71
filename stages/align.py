"""DVC stage `align`: align the training versions' chunks with the coarse model [II-D].

The work is `coverhunter.pipeline.align`; this entry point is `coverhunter align`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["align", *sys.argv[1:]])
