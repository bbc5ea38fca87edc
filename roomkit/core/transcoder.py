"""RoomKit 0.3.0's module path ``roomkit.core.transcoder``; its names live in
``roomkit.core.router``."""

from __future__ import annotations

from roomkit.core.router import ContentTranscoder, DefaultContentTranscoder

__all__ = ["ContentTranscoder", "DefaultContentTranscoder"]
