"""This lofi.nvim's version: what both ends of an engine link name at their handshake."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("lofi-nvim")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "unknown"
