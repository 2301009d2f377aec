"""Shared test fixtures. Integration tests get a real Tansu broker for the session."""

from __future__ import annotations
