"""Tests of the model package format (loopml.models)."""
