"""parse_model_ref: the three reference forms, and clear refusals of everything else."""

from __future__ import annotations

import doctest

import pytest

from loopml.errors import InvalidArgument
from loopml.models import refs
from loopml.models.refs import AliasRef, RunRef, VersionRef, parse_model_ref

RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (f"runs:/{RUN_ID}/model", RunRef(RUN_ID, "model")),
        (f"runs:/{RUN_ID}/nested/./dir//model/", RunRef(RUN_ID, "nested/dir/model")),
        ("models:/fraud-detector/1", VersionRef("fraud-detector", 1)),
        ("models:/fraud_detector.v2/42", VersionRef("fraud_detector.v2", 42)),
        ("models:/fraud@champion", AliasRef("fraud", "champion")),
        ("models:/Fraud@_shadow-2", AliasRef("Fraud", "_shadow-2")),
    ],
)
def test_good_refs(ref: str, expected: object) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "is not one of"),
        ("s3://bucket/model", "is not one of"),
        ("runs:model", "is not one of"),
        ("models:fraud/1", "is not one of"),
        (f"runs:/{RUN_ID}", "the path inside the run is empty"),
        (f"runs:/{RUN_ID}/", "the path inside the run is empty"),
        ("runs://model", "invalid run id ''"),
        ("runs:/../model/x", "invalid run id '..'"),
        (f"runs:/{RUN_ID}/../other-run/model", "'..' segment"),
        (f"runs:/{RUN_ID}/%2e%2e/x", "'..' segment"),
        (f"runs:/{RUN_ID}/a\x00b", "not allowed"),
        ("models:/fraud", "give a version or an alias"),
        ("models:/fraud/", "give a version or an alias"),
        ("models:/fraud/latest", "version 'latest' is not a positive integer"),
        ("models:/fraud/0", "version '0' is not a positive integer"),
        ("models:/fraud/-1", "version '-1' is not a positive integer"),
        ("models:/fraud/01", "version '01' is not a positive integer"),
        ("models:/fraud/1/extra", "version '1/extra' is not a positive integer"),
        ("models:/fraud@", "invalid alias ''"),
        ("models:/fraud@1st", "invalid alias '1st'"),
        ("models:/fraud@a/b", "invalid alias 'a/b'"),
        ("models:/@champion", "invalid model name ''"),
        ("models:/fr aud/1", "invalid model name 'fr aud'"),
        ("models:/../1", "invalid model name '..'"),
    ],
)
def test_bad_refs(ref: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_model_ref(ref)


def test_not_a_string() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_model_ref(3)  # type: ignore[arg-type]


def test_doctests() -> None:
    assert doctest.testmod(refs).failed == 0
