"""The ``rapport`` command line: the local stack and operator tools (typer + rich)."""
