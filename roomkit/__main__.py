"""``python -m roomkit``: the ``roomkit`` command line (see ``roomkit.cli``)."""

from __future__ import annotations

import sys

from roomkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
