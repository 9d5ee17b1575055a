"""Deployments: named, versioned routing configs, and the pure routing decision.

A deployment says which registered model versions (or aliases) get live traffic and with what
weights (A/B, canary), which see a mirrored share of the traffic as shadows (their answers are
logged, never returned), how a caller is pinned to one target (``sticky_key``) and the serving
knobs. Every change makes a new revision; a rollback restores an older revision's spec as a new
revision.

>>> import random
>>> spec = DeploymentSpec((Target("fraud", version=1, weight=9), Target("fraud", version=2,
...                        weight=1), Target("fraud", alias="challenger", shadow=True)))
>>> [t.weight for t in spec.live]   # normalised: the live weights sum to 1
[0.9, 0.1]
>>> live, shadows = choose(spec, "customer-42", random.Random(0))
>>> live == choose(spec, "customer-42", random.Random(1))[0]   # same key, same target
True
>>> [s.ref for s in shadows]
['fraud@challenger']
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from loopml.errors import InvalidArgument
from loopml.registry.entities import NAME_PATTERN, validate_alias, validate_model_name

MAX_TARGETS = 100
MAX_WEIGHT = 1e6
MAX_BATCH_SIZE = 100_000
MAX_WAIT_MS = 60_000.0
MAX_REDACT = 1000
REDACT_MODES = ("drop", "hash")
# Weights that already sum to 1 within this are kept as given: re-normalising a stored spec
# must give back the very same floats.
_SUM_TOLERANCE = 1e-9

_STICKY_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
_REF = re.compile(r"(?P<model>[^:@=\s]+)(?:(?P<sep>[:@])(?P<which>[^:@=\s]+))?")


def validate_deployment_name(name: str) -> str:
    """Letters, digits, ``_ . -``; 1-128 characters, starting with a letter or digit."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"invalid deployment name {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def _share(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{what} must be a number in [0, 1], got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidArgument(f"{what} must be in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Target:
    """One model version in a deployment: a fixed ``version`` or an ``alias`` resolved at serving
    time (moving the alias re-routes live traffic)."""

    model: str
    version: int | None = None
    alias: str | None = None
    weight: float = 0.0  # share of live traffic (normalised over the live targets)
    shadow: bool = False  # mirrored: answers logged, never returned

    def __post_init__(self) -> None:
        validate_model_name(self.model)
        if (self.version is None) == (self.alias is None):
            raise InvalidArgument(
                f"target {self.model!r} needs exactly one of a version or an alias"
            )
        if self.version is not None and (
            isinstance(self.version, bool)
            or not isinstance(self.version, int)
            or not 0 < self.version < 2**63
        ):
            raise InvalidArgument(
                f"target {self.model!r}: version must be a positive integer, got {self.version!r}"
            )
        if self.alias is not None:
            validate_alias(self.alias)
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidArgument(f"target {self.ref}: weight must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0 or weight > MAX_WEIGHT:
            raise InvalidArgument(
                f"target {self.ref}: weight must be a finite number in [0, {MAX_WEIGHT:g}], "
                f"got {weight!r}"
            )
        if not isinstance(self.shadow, bool):
            raise InvalidArgument(f"target {self.ref}: shadow must be true or false")
        object.__setattr__(self, "weight", float(weight))

    @property
    def ref(self) -> str:
        """``model:version`` or ``model@alias``: how the CLI and ``set_traffic`` name it."""
        return f"{self.model}:{self.version}" if self.version is not None else (
            f"{self.model}@{self.alias}"
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "alias": self.alias,
                "weight": self.weight, "shadow": self.shadow}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Target:
        if not isinstance(d, Mapping):
            raise InvalidArgument(f"a target is an object with a model, got {d!r}")
        unknown = set(d) - {"model", "version", "alias", "weight", "shadow"}
        if unknown:
            raise InvalidArgument(f"unknown target fields {sorted(unknown)}")
        if "model" not in d:
            raise InvalidArgument("a target needs a model")
        return cls(
            model=d["model"], version=d.get("version"), alias=d.get("alias"),
            weight=d.get("weight", 0.0), shadow=d.get("shadow", False),
        )  # fmt: skip


def parse_ref(text: str, *, weight: float = 0.0, shadow: bool = False) -> Target:
    """``model:version`` or ``model@alias`` → a :class:`Target`.

    >>> parse_ref("fraud:3").version, parse_ref("fraud@champion").alias
    (3, 'champion')
    """
    match = _REF.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or match["sep"] is None:
        raise InvalidArgument(
            f"bad target {text!r}: use MODEL:VERSION or MODEL@ALIAS, e.g. fraud:3 or fraud@champion"
        )
    if match["sep"] == "@":
        return Target(match["model"], alias=match["which"], weight=weight, shadow=shadow)
    which = match["which"]
    if not which.isascii() or not which.isdigit():
        raise InvalidArgument(f"bad target {text!r}: the version after ':' must be a number")
    return Target(match["model"], version=int(which), weight=weight, shadow=shadow)


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """What a deployment serves. Constructing one validates it; live weights are normalised to
    sum to 1 and shadow weights to 0, so equal routing means equal specs."""

    targets: tuple[Target, ...]
    shadow_share: float = 1.0  # fraction of requests mirrored to the shadow targets
    sticky_key: str | None = None  # header (X-…) or input field pinning a caller to a target
    max_batch_size: int | None = None  # None: the server's default
    max_wait_ms: float | None = None  # None: the server's default
    sample_rate: float = 1.0  # share of predictions written to the prediction log
    redact: dict[str, str] = field(default_factory=dict)  # column -> "drop" | "hash"

    def __post_init__(self) -> None:
        targets = self.targets
        if not isinstance(targets, tuple | list) or not targets:
            raise InvalidArgument("a deployment needs at least one target")
        if len(targets) > MAX_TARGETS:
            raise InvalidArgument(f"a deployment has at most {MAX_TARGETS} targets")
        if not all(isinstance(t, Target) for t in targets):
            raise InvalidArgument("targets must be Target records")
        seen: set[tuple[str, int | None, str | None]] = set()
        for t in targets:
            key = (t.model, t.version, t.alias)
            if key in seen:
                raise InvalidArgument(f"target {t.ref} appears more than once")
            seen.add(key)
        live = [t for t in targets if not t.shadow]
        if not live:
            raise InvalidArgument("a deployment needs at least one live (non-shadow) target")
        total = math.fsum(t.weight for t in live)
        if total <= 0:
            raise InvalidArgument(
                "the live targets' weights sum to 0: give at least one a positive weight"
            )
        exact = abs(total - 1.0) <= _SUM_TOLERANCE
        normalised = tuple(
            replace(t, weight=0.0) if t.shadow
            else (t if exact else replace(t, weight=t.weight / total))
            for t in targets
        )  # fmt: skip
        object.__setattr__(self, "targets", normalised)
        object.__setattr__(self, "shadow_share", _share(self.shadow_share, "shadow_share"))
        object.__setattr__(self, "sample_rate", _share(self.sample_rate, "sample_rate"))
        self._check_knobs()

    def _check_knobs(self) -> None:
        key = self.sticky_key
        if key is not None and (not isinstance(key, str) or not _STICKY_KEY.fullmatch(key)):
            raise InvalidArgument(
                f"invalid sticky_key {key!r}: use 1-128 letters, digits, '_', '.' or '-' "
                "(a header such as X-Customer-Id, or an input field)"
            )
        size = self.max_batch_size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE
        ):
            raise InvalidArgument(
                f"max_batch_size must be an integer in [1, {MAX_BATCH_SIZE}], got {size!r}"
            )
        wait = self.max_wait_ms
        if wait is not None:
            if (
                isinstance(wait, bool)
                or not isinstance(wait, int | float)
                or not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT_MS)
            ):
                raise InvalidArgument(
                    f"max_wait_ms must be a number in [0, {MAX_WAIT_MS:g}], got {wait!r}"
                )
            object.__setattr__(self, "max_wait_ms", float(wait))
        if not isinstance(self.redact, Mapping):
            raise InvalidArgument("redact maps column names to 'drop' or 'hash'")
        if len(self.redact) > MAX_REDACT:
            raise InvalidArgument(f"redact names at most {MAX_REDACT} columns")
        for column, mode in self.redact.items():
            if not isinstance(column, str) or not column.strip() or len(column) > 250:
                raise InvalidArgument(f"redact: invalid column name {column!r}")
            if mode not in REDACT_MODES:
                raise InvalidArgument(
                    f"redact {column!r}: unknown mode {mode!r}, use 'drop' or 'hash'"
                )
        object.__setattr__(self, "redact", dict(self.redact))
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def live(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if not t.shadow)

    @property
    def shadows(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.shadow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": [t.to_dict() for t in self.targets],
            "shadow_share": self.shadow_share,
            "sticky_key": self.sticky_key,
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
            "sample_rate": self.sample_rate,
            "redact": dict(sorted(self.redact.items())),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentSpec:
        """The spec ``to_dict`` wrote, validated (InvalidArgument names what is wrong)."""
        if not isinstance(d, Mapping):
            raise InvalidArgument("a deployment spec is an object with targets")
        unknown = set(d) - {"targets", "shadow_share", "sticky_key", "max_batch_size",
                            "max_wait_ms", "sample_rate", "redact"}  # fmt: skip
        if unknown:
            raise InvalidArgument(f"unknown deployment spec fields {sorted(unknown)}")
        targets = d.get("targets")
        if not isinstance(targets, list | tuple):
            raise InvalidArgument("a deployment spec needs a list of targets")
        return cls(
            targets=tuple(Target.from_dict(t) for t in targets[: MAX_TARGETS + 1]),
            shadow_share=d.get("shadow_share", 1.0),
            sticky_key=d.get("sticky_key"),
            max_batch_size=d.get("max_batch_size"),
            max_wait_ms=d.get("max_wait_ms"),
            sample_rate=d.get("sample_rate", 1.0),
            redact=dict(d.get("redact") or {}),
        )

    def with_traffic(self, weights: Mapping[str, float]) -> DeploymentSpec:
        """The live targets replaced by ``weights`` (``model:version`` / ``model@alias`` →
        weight); shadows stay, except one named here, which goes live (shadow → canary)."""
        if not isinstance(weights, Mapping) or not weights:
            raise InvalidArgument("give at least one MODEL:VERSION or MODEL@ALIAS weight")
        if len(weights) > MAX_TARGETS:
            raise InvalidArgument(f"a deployment has at most {MAX_TARGETS} targets")
        live = [parse_ref(ref, weight=w) for ref, w in weights.items()]
        named = {(t.model, t.version, t.alias) for t in live}
        kept = [s for s in self.shadows if (s.model, s.version, s.alias) not in named]
        return replace(self, targets=(*live, *kept))


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    project_id: str
    spec: DeploymentSpec
    revision: int
    description: str
    created_by: str
    created_time: int
    updated_by: str
    updated_time: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "project_id": self.project_id, "spec": self.spec.to_dict(),
            "revision": self.revision, "description": self.description,
            "created_by": self.created_by, "created_time": self.created_time,
            "updated_by": self.updated_by, "updated_time": self.updated_time,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Deployment:
        return cls(**{**d, "spec": DeploymentSpec.from_dict(d["spec"])})


@dataclass(frozen=True, slots=True)
class DeploymentRevision:
    name: str
    revision: int
    spec: DeploymentSpec
    actor: str
    time: int
    reason: str  # "create", "update", "traffic", "rollback to 3", …

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision, "spec": self.spec.to_dict(),
                "actor": self.actor, "time": self.time, "reason": self.reason}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeploymentRevision:
        return cls(**{**d, "spec": DeploymentSpec.from_dict(d["spec"])})


# routing --------------------------------------------------------------------------------------
def _unit(key: str) -> float:
    """A stable point in [0, 1) for ``key`` (the same in every process and release)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose(
    spec: DeploymentSpec, key: str | None, rng: random.Random
) -> tuple[Target, tuple[Target, ...]]:
    """The live target of one request, and the shadows to mirror it to.

    The live target is drawn by weight; with a ``key`` (the sticky key's value) the draw is a
    stable hash of the key into the weight ranges, so the same key meets the same target as
    long as the spec is unchanged. The shadows are all shadow targets when
    ``rng.random() < spec.shadow_share``, else none.
    """
    live = spec.live
    point = _unit(key) if key is not None else rng.random()
    cumulative = 0.0
    for target in live:
        cumulative += target.weight
        if point < cumulative:  # an empty range (weight 0) never holds the point
            chosen = target
            break
    else:  # rounding left the point past the last range: the last target with any weight
        chosen = next(t for t in reversed(live) if t.weight > 0)
    shadows = spec.shadows
    if shadows and rng.random() < spec.shadow_share:
        return chosen, shadows
    return chosen, ()


# audit ----------------------------------------------------------------------------------------
def spec_diff(before: DeploymentSpec | None, after: DeploymentSpec | None) -> dict[str, Any]:
    """What changed between two specs, for the audit log: targets by ref (added, removed,
    weight or shadow changed) and every other field as ``{"from", "to"}``."""
    old = before.to_dict() if before is not None else {}
    new = after.to_dict() if after is not None else {}
    old_targets = {Target.from_dict(t).ref: t for t in old.pop("targets", [])}
    new_targets = {Target.from_dict(t).ref: t for t in new.pop("targets", [])}
    diff: dict[str, Any] = {}
    added = [new_targets[r] for r in new_targets if r not in old_targets]
    removed = [old_targets[r] for r in old_targets if r not in new_targets]
    changed = {
        r: {k: {"from": old_targets[r][k], "to": t[k]} for k in ("weight", "shadow")
            if old_targets[r][k] != t[k]}
        for r, t in new_targets.items() if r in old_targets and old_targets[r] != t
    }  # fmt: skip
    if added:
        diff["targets_added"] = added
    if removed:
        diff["targets_removed"] = removed
    if changed:
        diff["targets_changed"] = changed
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            diff[k] = {"from": old.get(k), "to": new.get(k)}
    return diff
