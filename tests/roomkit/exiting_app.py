"""An ``--app`` module that exits as it loads (``sys.exit(3)``), as an app refusing its
configuration would (see test_ingress)."""

from __future__ import annotations

import sys

sys.exit(3)
