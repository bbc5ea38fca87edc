"""voice."""

from __future__ import annotations
