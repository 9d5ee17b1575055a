"""EDGE: the ``loopml`` command line (Typer + Rich), one module per command group."""
