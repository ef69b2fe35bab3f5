import pytest

from yolocc.compiler.errors import UsageError
from yolocc.compiler.params import Param, bind, parse_pass_spec

PARAMS = (Param("ratio", "float", 0.25, low=0.0, high=1.0, high_open=True),
          Param("importance", "choice", "l2", choices=("l1", "l2")),
          Param("round_to", "int", 8, low=1, high=256),
          Param("flag", "bool", False))


def test_positional_and_named():
    spec = parse_pass_spec("prune:0.5,importance=l1")
    assert spec.name == "prune" and spec.positional == ("0.5",) and spec.args == {"importance": "l1"}
    assert bind("prune", PARAMS, spec.args, spec.positional) == {
        "ratio": 0.5, "importance": "l1", "round_to": 8, "flag": False}


def test_defaults_and_bool():
    assert bind("p", PARAMS, {"flag": "yes"})["flag"] is True
    assert bind("p", PARAMS, {})["ratio"] == 0.25


@pytest.mark.parametrize("text, message", [
    ("prune:1.5", "must be < 1.0"),
    ("prune:-0.1", "must be >= 0.0"),
    ("prune:abc", "must be a finite number"),
    ("prune:nan", "must be a finite number"),
    ("prune:importance=l9", "must be one of l1, l2"),
    ("prune:round_to=2.5", "must be an integer"),
    ("prune:bogus=1", "has no argument 'bogus'"),
    ("prune:flag=maybe", "true or false"),
    ("prune:0.1,0.2,0.3,0.4,0.5", "at most 4 positional"),
    ("prune:ratio=0.1,ratio=0.2", "given twice"),
    ("prune:0.1,ratio=0.2", "given twice"),
])
def test_bad_arguments(text, message):
    with pytest.raises(UsageError, match=message):
        spec = parse_pass_spec(text)
        bind("prune", PARAMS, spec.args, spec.positional)


@pytest.mark.parametrize("text", [":0.5", "prune:ratio=0.1,,", "prune:=3", "prune:importance=l1,0.3"])
def test_malformed_syntax(text):
    with pytest.raises(UsageError):
        parse_pass_spec(text)
