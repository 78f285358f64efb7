import json
import math
from importlib import resources

import numpy as np
import pytest

from remixformer.schema import AGE_BINS, AGE_RANGE, MetadataSchema, boolean, categorical, numeric


@pytest.fixture
def schema():
    return MetadataSchema(
        [
            categorical("sex", ("female", "male"), aliases={"UNK": None}),
            numeric("age", AGE_BINS),
            boolean("itch"),
            categorical("country", ("BRAZIL", "ITALY"), aliases={"BRASIL": "BRAZIL"}),
        ]
    )


def test_dim_and_slices_cover_the_vector_without_gaps(schema):
    assert schema.dim == 3 + 9 + 3 + 3
    slices = schema.field_slices()
    assert list(slices) == ["sex", "age", "itch", "country"]
    covered = np.concatenate([np.arange(s.start, s.stop) for s in slices.values()])
    assert covered.tolist() == list(range(schema.dim))
    assert len(schema.feature_names()) == schema.dim
    assert schema.feature_names()[2] == "sex=<unknown>"


def test_encode_is_one_hot_per_field(schema):
    v = schema.encode({"sex": "male", "age": 45, "itch": "True", "country": "ITALY"})
    assert v.dtype == np.float32 and v.shape == (schema.dim,)
    for name, sl in schema.field_slices().items():
        assert v[sl].sum() == 1.0, name
    assert schema.decode(v) == {"sex": "male", "age": "40-50", "itch": "True", "country": "ITALY"}


@pytest.mark.parametrize("raw", [None, "", "   ", float("nan"), np.nan, "UNK", "robot"])
def test_blank_nan_alias_and_unseen_values_land_in_the_unknown_slot(schema, raw):
    v = schema.encode({"sex": raw})
    sl = schema.field_slices()["sex"]
    assert v[sl].tolist() == [0.0, 0.0, 1.0]


def test_missing_fields_are_unknown_and_extra_keys_ignored_by_encode(schema):
    v = schema.encode({"unrelated": 3})
    for sl in schema.field_slices().values():
        assert v[sl][-1] == 1.0


def test_matching_is_exact_then_case_insensitive_then_alias(schema):
    sl = schema.field_slices()["country"]
    assert schema.encode({"country": "brazil"})[sl].tolist() == [1, 0, 0]
    assert schema.encode({"country": "BRASIL"})[sl].tolist() == [1, 0, 0]
    assert schema.encode({"sex": "Male "})[schema.field_slices()["sex"]].tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("age", "label"),
    [
        (0, "<20"),
        (19.9, "<20"),
        (20, "20-30"),
        (29, "20-30"),
        (55.0, "50-60"),
        ("61", "60-70"),
        (79.99, "70-80"),
        (80, ">=80"),
        (120, ">=80"),
        ("50-60", "50-60"),
    ],
)
def test_numeric_bins_are_half_open_intervals(schema, age, label):
    assert schema.decode(schema.encode({"age": age}))["age"] == label


def test_numeric_non_numbers_are_unseen(schema):
    f = schema["age"]
    assert f.lookup("old") == (None, "unseen")
    assert f.lookup(float("inf")) == (None, "unseen")
    assert f.lookup(float("nan")) == (None, "blank")


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1_000", "0x10", "4 7", "", "٤٧", "1e", "--5"])
def test_a_number_is_a_plain_decimal(schema, raw):
    expected = (None, "blank") if raw == "" else (None, "unseen")
    assert schema["age"].lookup(raw) == expected


@pytest.mark.parametrize("raw", ["47", " 47 ", "+47", "47.", "4.7e1", "47.0", np.int64(47), np.float32(47)])
def test_plain_numbers_in_every_spelling_are_read(schema, raw):
    assert schema["age"].lookup(raw) == (AGE_BINS.index(40.0) + 1, "ok")


def test_a_range_bounds_a_numeric_field_and_round_trips():
    s = MetadataSchema([numeric("age", AGE_BINS, value_range=AGE_RANGE)])
    f = s["age"]
    for raw in (-5, "-5", 121, 1e308, "1e308", -0.001):
        assert f.lookup(raw) == (None, "unseen"), raw
    assert f.lookup(0)[1] == f.lookup(120)[1] == f.lookup("120")[1] == "ok"
    assert f.lookup(">=80") == (len(AGE_BINS), "ok")  # a bin label is still accepted
    with pytest.raises(ValueError, match=r"value -5 is not allowed; expected a number from 0 to 120"):
        s.validate({"age": -5})
    d = json.loads(json.dumps(s.to_dict()))
    assert d["fields"][0]["range"] == [0.0, 120.0]
    again = MetadataSchema.from_dict(d)
    assert again == s and again["age"].value_range == (0.0, 120.0)
    # a field without a range takes any finite number, as before
    assert MetadataSchema([numeric("age", AGE_BINS)])["age"].lookup(1e308) == (len(AGE_BINS), "ok")


def test_the_public_data_sets_bound_their_numbers():
    from remixformer.data.datasets import isic, pad_ufes, synthetic

    for schema in (
        pad_ufes.SCHEMA,
        synthetic.SCHEMA,
        isic.ISIC2017_SCHEMA,
        isic.ISIC2018_SCHEMA,
        isic.ISIC2019_SCHEMA,
    ):
        for f in schema.fields:
            if f.kind == "numeric":
                assert f.value_range is not None, (schema.name, f.name)


@pytest.mark.parametrize(
    ("raw", "idx"),
    [(True, 1), (False, 0), ("True", 1), ("false", 0), (1, 1), (0.0, 0), ("yes", 1), ("no", 0)],
)
def test_boolean_parsing(schema, raw, idx):
    assert schema["itch"].lookup(raw) == (idx, "ok")


def test_validate_rejects_unknown_fields_and_values_naming_them(schema):
    assert schema.validate({"sex": "female", "age": None}) == {
        "sex": "female",
        "age": None,
        "itch": None,
        "country": None,
    }
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['height'\]"):
        schema.validate({"height": 180})
    with pytest.raises(
        ValueError, match=r"field 'sex': value 'robot' is not allowed; expected \['female', 'male'\]"
    ):
        schema.validate({"sex": "robot"})
    with pytest.raises(ValueError, match="field 'age'"):
        schema.validate({"age": "old"})


def test_round_trip_through_json(schema):
    d = json.loads(json.dumps(schema.to_dict()))
    again = MetadataSchema.from_dict(d)
    assert again == schema
    raw = {"sex": "male", "age": 33, "itch": False, "country": "BRASIL"}
    assert np.array_equal(again.encode(raw), schema.encode(raw))


def test_numeric_labels_round_trip():
    s = MetadataSchema([numeric("fitz", (1.5, 2.5), labels=("I", "II", "III"))])
    again = MetadataSchema.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again["fitz"].values == ("I", "II", "III")
    assert again.decode(again.encode({"fitz": 2.0}))["fitz"] == "II"


@pytest.mark.parametrize(
    ("d", "msg"),
    [
        ({"fields": [{"name": "a", "kind": "numeric"}]}, "needs 'bins'"),
        ({"fields": [{"name": "a", "kind": "numeric", "bins": [3, 1]}]}, "ascending"),
        ({"fields": [{"name": "a", "kind": "colour", "values": ["x"]}]}, "kind must be one of"),
        ({"fields": [{"name": "a", "values": ["x", "x"]}]}, "repeated values"),
        (
            {"fields": [{"name": "a", "values": ["x"]}, {"name": "a", "values": ["y"]}]},
            "repeated field names",
        ),
        ({"fields": [{"name": "a", "values": ["x"], "colour": 1}]}, "unknown key"),
        (
            {"fields": [{"name": "a", "values": ["x"], "aliases": {"z": "w"}}]},
            "alias 'z' -> 'w' names no value",
        ),
        ({"fields": [{"name": "a", "kind": "numeric", "bins": [1], "range": [5, 1]}]}, "smallest first"),
        ({"fields": [{"name": "a", "kind": "numeric", "bins": [1], "range": [0, "inf"]}]}, "finite"),
        ({"fields": [{"name": "a", "kind": "numeric", "bins": [1], "range": 5}]}, r"\[smallest, largest\]"),
        ({"fields": [{"name": "a", "values": ["x"], "range": [0, 1]}]}, "only a numeric field"),
    ],
)
def test_bad_schemas_raise_naming_the_field(d, msg):
    with pytest.raises(ValueError, match=msg):
        MetadataSchema.from_dict(d)


def test_example_schema_has_table_ii_fields():
    text = resources.files("remixformer.data").joinpath("schemas/xskintumor12.json").read_text()
    d = json.loads(text)
    schema = MetadataSchema.from_dict(d)
    assert schema.field_names == [
        "sex",
        "color",
        "sign",
        "location",
        "age_of_onset",
        "duration",
        "evolution",
        "medical_history",
        "sun_exposure_time",
    ]
    assert [len(f.values) for f in schema.fields] == [2, 5, 5, 7, 5, 3, 5, 3, 3]
    assert schema.dim == 38 + 9
    assert d["tasks"][0]["name"] == "diag" and len(d["tasks"][0]["classes"]) == 12
    assert (
        schema.validate({"sex": "Female", "sign": "No hair", "age_of_onset": ">50"})["age_of_onset"] == ">50"
    )
    assert math.isclose(schema.encode({}).sum(), 9.0)


def test_linear_encoding_interpolates_between_knots_and_round_trips():
    f = numeric("score", (0.0, 0.25, 0.5, 0.75, 1.0), value_range=(0.0, 1.0), encoding="linear")
    s = MetadataSchema([f])
    assert f.values == ("0", "0.25", "0.5", "0.75", "1") and s.dim == 6
    assert np.allclose(s.encode({"score": 0.1}), [0.6, 0.4, 0, 0, 0, 0])
    assert np.allclose(s.encode({"score": "0.5"}), [0, 0, 1, 0, 0, 0])
    assert np.allclose(s.encode({"score": 1.0}), [0, 0, 0, 0, 1, 0])
    assert np.allclose(s.encode({"score": None}), [0, 0, 0, 0, 0, 1])
    assert np.allclose(s.encode({"score": 1.5}), [0, 0, 0, 0, 0, 1])  # outside the range: unknown
    # a linear layer over the slots reproduces any linear function of the score exactly
    xs = np.linspace(0, 1, 41)
    enc = s.encode_many([{"score": x} for x in xs])[:, :5]
    assert np.allclose(enc @ np.array([0.0, 0.25, 0.5, 0.75, 1.0]), xs)
    assert f.lookup(0.3) == (1, "ok") and s.validate({"score": 0.3}) == {"score": "0.25"}
    with pytest.raises(ValueError, match="interpolated between"):
        s.validate({"score": 2})
    d = json.loads(json.dumps(s.to_dict()))
    assert d["fields"][0]["encoding"] == "linear" and "labels" not in d["fields"][0]
    again = MetadataSchema.from_dict(d)
    assert again == s and np.array_equal(again.encode({"score": 0.33}), s.encode({"score": 0.33}))
    # the default (one-hot bins) writes no encoding key: existing schema files are unchanged
    assert "encoding" not in MetadataSchema([numeric("age", AGE_BINS)]).to_dict()["fields"][0]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"name": "a", "kind": "numeric", "bins": [1], "encoding": "linear"}, "at least two knots"),
        ({"name": "a", "kind": "numeric", "bins": [0, 1], "encoding": "spline"}, "encoding must be one of"),
        ({"name": "a", "values": ["x"], "encoding": "linear"}, "only a numeric field"),
        ({"name": "a", "kind": "numeric", "bins": [0, 1], "labels": ["lo"], "encoding": "linear"}, "2 knots"),
    ],
)
def test_bad_encodings_are_refused_naming_the_field(field, message):
    with pytest.raises(ValueError, match=message):
        MetadataSchema.from_dict({"fields": [field]})
