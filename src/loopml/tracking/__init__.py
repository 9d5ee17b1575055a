"""Experiment tracking: experiments, runs, params, metrics, tags, inputs and search (stage 3)."""
