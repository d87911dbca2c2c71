"""DVC stage `train`: train_coarse and train_fine [II-D]: python -m stages.train coarse|fine.

The work is `coverhunter.pipeline.train`; this entry point is `coverhunter train`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
