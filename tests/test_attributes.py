import pytest
from hypothesis import given
from hypothesis import strategies as st

from steer.attributes import PRESETS, SCHEMAS, SAFETY_FROM_SEVERITY, get_schema, parse_assignments, preset_values, presets_for
from steer.errors import UsageError

HELPSTEER = SCHEMAS["helpsteer"]


def test_builtin_schemas_are_ordered_as_published():
    assert HELPSTEER.names == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    assert HELPSTEER.defaults() == {"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 2}
    assert SCHEMAS["oasst"].names == ["quality", "toxicity", "humor", "creativity"]
    assert SCHEMAS["steerlm"].names == ["quality", "toxicity", "humor", "creativity", "helpfulness",
                                        "correctness", "coherence", "complexity", "verbosity"]
    assert all(a.min == 0 and a.max == 4 for name in ("helpsteer", "oasst", "steerlm") for a in SCHEMAS[name].attributes)


def test_safety_scale_follows_pku_severity():
    (attr,) = SCHEMAS["safety"].attributes
    assert (attr.name, attr.min, attr.max, attr.default) == ("harmlessness", 0, 3, 3)
    assert SAFETY_FROM_SEVERITY == {0: 3, 1: 2, 2: 1, 3: 0}


def test_parse_both_syntaxes_and_render_in_schema_order():
    values = parse_assignments(["verbosity=1", "helpfulness:4,complexity = 3"], HELPSTEER)
    assert values == {"helpfulness": 4, "complexity": 3, "verbosity": 1}
    assert list(values) == ["helpfulness", "complexity", "verbosity"]
    assert HELPSTEER.render(values) == "helpfulness:4,correctness:4,coherence:4,complexity:3,verbosity:1"


@pytest.mark.parametrize("items, message", [
    (["helpfulnes=4"], "unknown attribute 'helpfulnes' for schema 'helpsteer'; did you mean 'helpfulness'?"),
    (["verbosity=5"], "attribute 'verbosity': value 5 out of range 0-4"),
    (["verbosity=-1"], "attribute 'verbosity': value -1 out of range 0-4"),
    (["verbosity=1.5"], "attribute 'verbosity': value '1.5' is not an integer"),
    (["verbosity=high"], "attribute 'verbosity': value 'high' is not an integer"),
    (["verbosity=1", "verbosity:2"], "attribute 'verbosity' given twice"),
    (["verbosity"], "cannot parse attribute 'verbosity'; expected name=value or name:value"),
    (["verbosity=1,,"], "empty attribute"),
])
def test_bad_input_is_one_clear_line(items, message):
    with pytest.raises(UsageError) as err:
        parse_assignments(items, HELPSTEER)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_resolution_precedence_defaults_preset_explicit():
    assert HELPSTEER.resolve(preset="simple", values={"verbosity": 3}) == {
        "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 0, "verbosity": 3}
    assert HELPSTEER.resolve() == HELPSTEER.defaults()


def test_presets_are_data_and_checked_against_the_schema():
    assert {"concise", "detailed", "expert", "simple"} <= set(presets_for(HELPSTEER))
    assert "concise" not in presets_for(SCHEMAS["oasst"])
    assert preset_values("concise", HELPSTEER) == {"verbosity": 0}
    with pytest.raises(UsageError, match="did you mean 'concise'"):
        preset_values("consise", HELPSTEER)
    with pytest.raises(UsageError, match="which schema 'oasst' does not have"):
        preset_values("concise", SCHEMAS["oasst"])
    for name, (desc, values) in PRESETS.items():
        assert desc and isinstance(values, dict), name


def test_unknown_schema_suggests():
    with pytest.raises(UsageError, match="did you mean 'helpsteer'"):
        get_schema("helpster")


def test_schema_round_trips_through_dict():
    for schema in SCHEMAS.values():
        assert type(schema).from_dict(schema.to_dict()) == schema


@st.composite
def partial_values(draw, schema=HELPSTEER):
    names = draw(st.lists(st.sampled_from(schema.names), unique=True))
    return {n: draw(st.integers(schema.get(n).min, schema.get(n).max)) for n in names}


@given(values=partial_values(), sep=st.sampled_from(["=", ":", " = ", ": "]), split=st.booleans())
def test_parse_render_round_trip(values, sep, split):
    items = [f"{k}{sep}{v}" for k, v in values.items()]
    parsed = parse_assignments(items if split else ([",".join(items)] if items else []), HELPSTEER)
    assert parsed == values
    full = {**HELPSTEER.defaults(), **values}
    assert HELPSTEER.parse(HELPSTEER.render(values)) == full
    assert HELPSTEER.render(HELPSTEER.parse(HELPSTEER.render(values))) == HELPSTEER.render(values)


@given(text=st.text(max_size=40))
def test_parser_never_crashes_on_garbage(text):
    try:
        parse_assignments([text], HELPSTEER)
    except UsageError as err:
        assert "\n" not in str(err)
