"""providers."""

from __future__ import annotations
