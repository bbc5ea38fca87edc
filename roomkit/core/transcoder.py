"""RoomKit 0.3.0's module path ``roomkit.core.transcoder``; its names live in
``roomkit.core.router``."""

from __future__ import annotations

from roomkit.core.router import DefaultContentTranscoder

__all__ = ["DefaultContentTranscoder"]
