"""``python -m cosim.cli``: the ``xbar`` command."""

import sys

from cosim.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
