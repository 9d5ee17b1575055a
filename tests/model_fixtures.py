"""Python-flavor models the model tests share: a benign one and one whose pickle attacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Doubler:
    """A python-flavor model: any object with predict."""

    def predict(self, data: object) -> np.ndarray:
        return np.asarray(data, dtype=float) * 2


class Evil:
    """Unpickling this writes a marker file: what an attacker's pickle would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def predict(self, data: object) -> object:
        return data

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))
