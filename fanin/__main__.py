"""`python -m fanin ...` is the `fanin` command."""

import sys

from fanin.cli.main import main

sys.exit(main())
