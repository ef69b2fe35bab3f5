"""Property tests of the ``-p`` parser and ``bind``: whatever the input, only ``UsageError`` escapes,
bound values obey their declared types and ranges, and a bound spec round-trips through text."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from yolocc.compiler.errors import UsageError
from yolocc.compiler.params import Param, bind, parse_pass_spec

PARAMS = (
    Param("ratio", "float", 0.25, low=0.0, high=1.0, high_open=True),
    Param("round_to", "int", 8, low=1, high=256),
    Param("global", "bool", False),
    Param("importance", "choice", "l2", choices=("l1", "l2", "bn", "random")),
    Param("epochs", "int|auto", "auto", low=1, high=10000),
    Param("exclude", "str", ""),
)

values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=12), st.sampled_from(["auto", "inf", "-inf", "nan", "1e999", "2.7", "3.0", "l1"]))


def _valid(bound: dict) -> None:
    r, k, e = bound["ratio"], bound["round_to"], bound["epochs"]
    assert isinstance(r, float) and math.isfinite(r) and 0.0 <= r < 1.0
    assert type(k) is int and 1 <= k <= 256
    assert isinstance(bound["global"], bool) and bound["importance"] in ("l1", "l2", "bn", "random")
    assert e == "auto" or (type(e) is int and 1 <= e <= 10000)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_parser_raises_only_usage_errors(text):
    try:
        spec = parse_pass_spec(text)
    except UsageError:
        return
    assert spec.name and spec.name == spec.name.strip()


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(st.sampled_from([p.name for p in PARAMS] + ["bogus"]), values, max_size=4))
def test_bind_checks_every_value(args):
    try:
        bound = bind("p", PARAMS, args)
    except UsageError:
        return
    _valid(bound)
    for key in ("ratio", "round_to", "epochs"):  # a number is taken as given, never silently truncated
        raw = args.get(key)
        if raw is not None and bound[key] != "auto":
            assert float(raw) == bound[key], (key, raw, bound[key])


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 0.999), st.integers(1, 256), st.booleans(), st.sampled_from(["l1", "l2", "bn", "random"]),
       st.one_of(st.just("auto"), st.integers(1, 10000)))
def test_bound_values_round_trip_through_text(ratio, round_to, flag, importance, epochs):
    bound = bind("p", PARAMS, {"ratio": ratio, "round_to": round_to, "global": flag, "importance": importance,
                               "epochs": epochs})
    text = "p:" + ",".join(f"{k}={v}" for k, v in bound.items() if k != "exclude")
    spec = parse_pass_spec(text)
    assert bind("p", PARAMS, spec.args, spec.positional) == bound
