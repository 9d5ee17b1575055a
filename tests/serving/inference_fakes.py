"""Models for the inference server's tests: predictors that sleep, hang, record or fail.

A :class:`FakePredictor` keeps :class:`loopml.models.predictor.Predictor`'s contract: ``prepare``
validates with the signature, and ``predict`` prepares again and then calls the model, exactly as
the real one does; only the model behind it is made up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from loopml.models.signature import ColumnSpec, Signature

X_SIGNATURE = Signature(
    inputs=(ColumnSpec("x", "float64"),), outputs=(ColumnSpec(None, "float64", (-1,)),)
)
POISON = -1.0
HANG = 13.0


class FakePredictor:
    flavor = "python"

    def __init__(self, fn: Callable[[Any], Any], signature: Signature = X_SIGNATURE) -> None:
        self._fn = fn
        self._signature = signature

    @property
    def signature(self) -> Signature:
        return self._signature

    def prepare(self, data: Any) -> Any:
        return self._signature.validate(data)

    def predict(self, data: Any) -> Any:
        return self._fn(self.prepare(data))


class Recorder:
    """Doubles ``x``; records the rows of every call; refuses the poison value like bad input."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        with self._lock:
            self.batches.append(len(frame))
        x = frame["x"].to_numpy()
        if (x == POISON).any():
            raise ValueError(f"x must not be {POISON}")
        return x * 2


class Sleeper:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        time.sleep(self.seconds)
        return frame["x"].to_numpy() * 2


class Hanger:
    """Hangs on the HANG value until released (the test releases it at teardown)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["x"].to_numpy() == HANG).any():
            self.release.wait(60)
            self.finished.set()
        return frame["x"].to_numpy() * 2


def crash(frame: pd.DataFrame) -> np.ndarray:
    raise RuntimeError("the GPU caught fire")


def wrong_length(frame: pd.DataFrame) -> np.ndarray:
    return np.zeros(len(frame) + 1)


class TextLength:
    """A python-flavor model for BYTES inputs: the length of each text."""

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return data["text"].str.len().to_numpy(dtype=np.int64)
