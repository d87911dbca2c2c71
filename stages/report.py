"""DVC stage `report`: print the metrics table (the end of make demo).

The work is `coverhunter.pipeline.report`; this entry point is `coverhunter report`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["report", *sys.argv[1:]])
