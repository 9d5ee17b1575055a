"""Friendly default run names, such as ``brave-otter-417``."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "amber", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "gentle", "glad",
    "keen", "lively", "lucid", "merry", "nimble", "proud", "quick", "quiet", "rapid", "sharp",
    "steady", "sunny", "swift", "tidy", "vivid", "warm", "wise", "witty", "young", "zesty",
)  # fmt: skip
_NOUNS = (
    "badger", "bear", "crane", "deer", "eagle", "falcon", "ferret", "finch", "fox", "gecko",
    "hare", "heron", "ibis", "koala", "lark", "lynx", "mole", "moth", "newt", "otter",
    "owl", "panda", "quail", "raven", "seal", "shrew", "stork", "swan", "toad", "wren",
)  # fmt: skip


def random_run_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000)}"
