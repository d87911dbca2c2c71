"""DVC stage `validate`: the Great Expectations suite over the manifest.

The work is `coverhunter.pipeline.validate`; this entry point is `coverhunter validate`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["validate", *sys.argv[1:]])
