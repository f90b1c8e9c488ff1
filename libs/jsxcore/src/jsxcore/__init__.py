"""jsx shared domain library."""

__version__ = "0.2.0"
