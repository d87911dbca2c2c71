"""DVC stage `index`: the catalogue's chunk vectors in a faiss index, with the calibrated
cover / no match threshold.

The work is `coverhunter.pipeline.index`; this entry point is `coverhunter index build`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["index", "build", *sys.argv[1:]])
