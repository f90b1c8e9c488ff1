"""jsx public 公示 board: a small web app that is a gRPC client of the funds and members services."""

__version__ = "0.1.0"
