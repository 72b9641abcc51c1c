"""`python -m fanin.load ...` is `fanin load ...` (same errors and exit codes)."""

import sys

from fanin.cli.main import main

sys.exit(main(["load", *sys.argv[1:]]))
