"""Contract suites and test helpers every loopml backend must pass."""
