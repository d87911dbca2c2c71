"""DVC stage `evaluate`: mAP, MR1, HR1, P10 of every model per test set; register the final model.

The work is `coverhunter.pipeline.evaluate`; this entry point is `coverhunter evaluate`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
