"""DVC stage `pretrain`: the large-catalogue workspace: setup | export (make pretrain).

The work is `coverhunter.pipeline.pretrain`; this entry point is `coverhunter pretrain`."""
import sys

from coverhunter.cli import main

if __name__ == "__main__":
    main(["pretrain", *sys.argv[1:]])
