"""jsx shared domain library."""

__version__ = "0.1.0"
