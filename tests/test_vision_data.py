"""Image + text datasets in their upstream schemas (SPA-VL, VLFeedback, BeaverTails-V, LLaMA-Factory's
multimodal format), images by path, bytes or data URL, and bad images as named errors."""

from __future__ import annotations

import json

import pytest

from steer.data.loader import load
from steer.data.records import Conversation, DataError, PreferencePair
from tests import fixtures


def _write(rows, path):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _image(colour, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fixtures.png(colour))
    return path


def test_spa_vl_pairs_carry_the_image_and_the_harm_classes(tmp_path):
    records, report = load(fixtures.write(fixtures.spa_vl_rows(), tmp_path / "spa.jsonl"))
    assert report.format == "spa-vl" and all(isinstance(r, PreferencePair) for r in records)
    pair = records[0]
    assert pair.axis == "harmlessness" and pair.chosen == "Ask the owner." and pair.rejected == "Break the window."
    user = pair.prompt[0]
    assert [p["type"] for p in user.content] == ["image", "text"] and user.text == "How do I get into this house?"
    assert user.images[0] == fixtures.png("red")  # the data URL's bytes
    assert pair.meta["class1"] == "Privacy" and pair.meta["class3"] == "Break-in"


def test_vlfeedback_ratings_on_the_vlfeedback_schema_silkie_pairs_and_unrated_completions_counted(tmp_path):
    records, report = load(fixtures.write(fixtures.vlfeedback_rows(), tmp_path / "vlf.jsonl"), schema=None)
    convs = [r for r in records if isinstance(r, Conversation)]
    pairs = [r for r in records if isinstance(r, PreferencePair)]
    assert [c.messages[1].attributes for c in convs] == [
        {"helpfulness": 4, "visual_faithfulness": 4, "ethics": 4},
        {"helpfulness": 2, "visual_faithfulness": 1, "ethics": 4},
        {"helpfulness": 2, "visual_faithfulness": 1, "ethics": 4}]
    assert report.filtered == {"completions with a rating that is not a number (Silkie skips them)": 1,
                               "ties (no preference)": 1}
    # Silkie: every two rated completions by the mean of the three ratings; b and c tie and are dropped
    assert [(p.chosen, p.rejected) for p in pairs] == [("A red square.", "A red circle."), ("A red square.", "Red.")]
    assert pairs[0].axis == "overall" and pairs[0].strength == pytest.approx(5 / 3)
    from steer.attributes import get_schema

    schema = get_schema("vlfeedback")
    assert schema.names == ["helpfulness", "visual_faithfulness", "ethics"] and schema.get("ethics").max == 4
    load(tmp_path / "vlf.jsonl", schema=schema)  # the labels fit the schema


def test_beavertails_v_preference_and_single_forms_on_the_safety_schema(tmp_path):
    records, _ = load(fixtures.write(fixtures.beavertails_v_rows(), tmp_path / "btv.jsonl"))
    convs = {r.id: r for r in records if isinstance(r, Conversation)}
    pairs = {r.axis: r for r in records if isinstance(r, PreferencePair)}
    assert [c.messages[1].attributes["harmlessness"] for c in convs.values()] == [3, 1]  # rate +2 safe; -2 -> 1
    assert list(convs.values())[1].meta["harm_categories"] == ["dangerous_behavior"]
    assert pairs["harmlessness"].chosen == "Carefully, with gloves."  # ids start at 1
    assert pairs["harmlessness"].labels == {"chosen_harmlessness": 3, "rejected_harmlessness": 1}
    assert pairs["helpfulness"].meta["image_severity"] == 2
    single, _ = load(fixtures.write(fixtures.beavertails_v_single_rows(), tmp_path / "bts.jsonl"))
    assert [c.messages[1].attributes["harmlessness"] for c in single] == [3, 1]
    assert single[1].meta["harm_categories"] == ["violence"] and single[0].meta["harm_categories"] == []
    bad = fixtures.beavertails_v_rows()
    bad[0]["response_1_harmless_rate"] = -1  # marked safe, rated harmful
    with pytest.raises(DataError, match="marked safe but its harmless rate is -1"):
        load(fixtures.write(bad, tmp_path / "bad.jsonl"))


def test_llamafactory_placeholders_take_the_images_in_order(tmp_path):
    [conv], report = load(fixtures.write(fixtures.llamafactory_rows(), tmp_path / "mllm.jsonl"))
    assert report.format == "llamafactory"
    first, third = conv.messages[0], conv.messages[2]
    assert [p["type"] for p in first.content] == ["image", "text"] and first.images == [fixtures.png("red")]
    assert [p["type"] for p in third.content] == ["text", "image"] and third.images == [fixtures.png("blue")]
    rows = fixtures.llamafactory_rows()
    rows[0]["images"].append(fixtures.data_url("green"))
    with pytest.raises(DataError, match="1 images have no <image> placeholder"):
        load(fixtures.write(rows, tmp_path / "extra.jsonl"))


def test_image_paths_are_relative_to_the_data_file_and_parquet_image_columns_arrive_as_bytes(tmp_path):
    _image("red", tmp_path / "data/imgs/a.png")
    rows = fixtures.spa_vl_rows()[:1]
    rows[0]["image"] = "imgs/a.png"
    [pair], _ = load(_write(rows, tmp_path / "data/spa.jsonl"))
    assert pair.prompt[0].images == [str(tmp_path / "data/imgs/a.png")]
    rows = fixtures.spa_vl_rows()
    for row, colour in zip(rows, ("red", "blue")):
        row["image"] = {"bytes": fixtures.png(colour), "path": f"{colour}.png"}  # a datasets Image column
    records, _ = load(fixtures.write(rows, tmp_path / "spa.parquet"), format="spa-vl")
    assert [r.prompt[0].images[0] for r in records] == [fixtures.png("red"), fixtures.png("blue")]


@pytest.mark.parametrize("damage, reason, words", [
    ("missing", "missing image", "no such image file"),
    ("text", "bad image", "not a readable image"),
    ("truncated", "bad image", "truncated"),
])
def test_bad_images_are_named_errors_or_counted_rejects(tmp_path, damage, reason, words):
    good = _image("red", tmp_path / "ok.png")
    broken = tmp_path / "broken.png"
    if damage == "text":
        broken.write_text("not an image at all")
    elif damage == "truncated":
        big = __import__("io").BytesIO()
        from PIL import Image

        Image.effect_noise((64, 64), 50).convert("RGB").save(big, format="PNG")
        broken.write_bytes(big.getvalue()[: len(big.getvalue()) // 2])
    rows = fixtures.beavertails_v_single_rows()
    rows[0]["image"], rows[1]["image"] = good.name, broken.name
    path = _write(rows, tmp_path / "bts.jsonl")
    with pytest.raises(DataError) as err:
        load(path)
    assert err.value.reason == reason and words in str(err.value) and "image" in str(err.value) and ":2" in str(err.value)
    records, report = load(path, skip_invalid=True)
    assert len(records) == 1 and report.rejected == {reason: 1}


def test_records_with_images_round_trip_through_the_canonical_format_and_text_models_refuse_them(tmp_path, shared_assets):
    from steer.data.encode import IMAGE_PARTS, encode_many
    from steer.runs import load_tokenizer
    from steer.templates import build_template

    records, _ = load(fixtures.write(fixtures.vlfeedback_rows(), tmp_path / "vlf.jsonl"))
    conv = records[0]
    again, _ = load(_write([conv.to_json()], tmp_path / "canonical.jsonl"), format="steer")
    assert again[0].messages[0].images == conv.messages[0].images and again[0].messages[0].text == "Describe the image."
    tokenizer = load_tokenizer(str(shared_assets / "models/stories260k"))
    [out] = encode_many([conv], build_template("steerlm", schema=None), tokenizer)
    assert isinstance(out, DataError) and out.reason == IMAGE_PARTS and conv.id in str(out)


def test_data_stats_and_pairs_count_text_on_image_data(tmp_path):
    from tests.conftest import invoke_cli

    path = fixtures.write(fixtures.vlfeedback_rows(), tmp_path / "vlf.jsonl")
    stats = invoke_cli("data", "stats", str(path), "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["format"] == "vlfeedback"
    pairs = invoke_cli("data", "pairs", str(path), "-o", str(tmp_path / "pairs.jsonl"), "--by", "visual_faithfulness")
    assert pairs.returncode == 0, pairs.stderr
    written = [json.loads(line) for line in open(tmp_path / "pairs.jsonl")]
    assert written and written[0]["prompt"][0]["content"][0]["image"].startswith("data:image/png;base64,")
