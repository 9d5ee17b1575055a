"""Frozen records of stage 1: a project's goal, its OKRs, and the KPIs models are judged by."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

from loopml.errors import InvalidArgument

DEFAULT_PROJECT = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,127}$")


class Direction(enum.StrEnum):
    """Which way is better for a KPI."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class JudgedAt(enum.StrEnum):
    """When a KPI is checked: at validation time (offline) or in production (online)."""

    VALIDATION = "validation"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class Kpi:
    kpi_id: str
    project_id: str
    name: str
    metric: str
    target: float
    direction: Direction
    judged_at: JudgedAt
    description: str = ""
    owner: str = ""

    def is_met(self, value: float) -> bool:
        """True when ``value`` reaches the target in the KPI's direction.

        >>> k = Kpi("1", "1", "recall", "recall", 0.9, Direction.MAXIMIZE, JudgedAt.VALIDATION)
        >>> k.is_met(0.93), k.is_met(0.5)
        (True, False)
        """
        if math.isnan(value):
            return False
        if self.direction is Direction.MAXIMIZE:
            return value >= self.target
        return value <= self.target


@dataclass(frozen=True, slots=True)
class Okr:
    okr_id: str
    project_id: str
    objective: str
    key_results: tuple[str, ...] = ()
    owner: str = ""


@dataclass(frozen=True, slots=True)
class Project:
    project_id: str
    name: str
    business_goal: str
    description: str
    owner: str
    creation_time: int
    last_update_time: int
    okrs: tuple[Okr, ...] = ()
    kpis: tuple[Kpi, ...] = field(default_factory=tuple)


def validate_name(kind: str, name: str) -> str:
    """Names of projects and KPIs: 1-128 characters, letters, digits, space, ``_ . -``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, spaces, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_direction(value: str | Direction) -> Direction:
    try:
        return Direction(value.lower() if isinstance(value, str) else value)
    except ValueError:
        raise InvalidArgument(
            f"invalid KPI direction {value!r}: use 'maximize' or 'minimize'"
        ) from None


def parse_judged_at(value: str | JudgedAt) -> JudgedAt:
    try:
        return JudgedAt(value.lower() if isinstance(value, str) else value)
    except ValueError:
        raise InvalidArgument(
            f"invalid KPI stage {value!r}: use 'validation' or 'production'"
        ) from None


def validate_target(target: float) -> float:
    if isinstance(target, bool) or not isinstance(target, int | float) or not math.isfinite(target):
        raise InvalidArgument(f"invalid KPI target {target!r}: must be a finite number")
    return float(target)
