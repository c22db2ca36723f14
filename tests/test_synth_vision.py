"""The visual synthetic world: images whose facts are known, answers whose attributes the oracle reads back."""

from __future__ import annotations

import random

from steer import synth_vision as sv
from steer.data.loader import load


def test_the_oracle_reads_back_every_answer_s_attributes():
    for seed in range(5):
        for row, _ in sv.rows(60, seed=seed):
            fact, answer = row["meta"]["facts"], row["messages"][1]
            judged = sv.judge(fact, answer["content"])
            # the share of right facts, of the min(v+1, 4) stated: rounded back it is the label
            stated = min(answer["attributes"]["verbosity"] + 1, 4)
            assert judged["verbosity"] == answer["attributes"]["verbosity"]
            assert round(judged["visual_faithfulness"] * stated / 4) == round(stated * answer["attributes"]["visual_faithfulness"] / 4)


def test_a_faithful_answer_agrees_with_the_image_and_an_unfaithful_one_contradicts_it():
    rng = random.Random(0)
    fact = {"colour": "blue", "shape": "circle", "count": 2, "side": "right"}
    assert sv.respond(fact, "count", {"visual_faithfulness": 4, "verbosity": 1}, rng) == \
        "There are two shapes. The shapes are blue."
    wrong = sv.respond(fact, "count", {"visual_faithfulness": 0, "verbosity": 0}, rng)
    assert wrong.startswith("There are ") and "two" not in wrong
    assert sv.judge(fact, wrong) == {"visual_faithfulness": 0.0, "verbosity": 0}
    assert sv.judge(fact, "I am not sure.")["visual_faithfulness"] == 0.0  # nothing stated: nothing faithful


def test_images_show_their_facts():
    img = sv.draw({"colour": "red", "shape": "square", "count": 3, "side": "left"})
    width, height = img.size
    left = [img.getpixel((x, y)) for x in range(width // 2) for y in range(height)]
    right = [img.getpixel((x, y)) for x in range(width // 2, width) for y in range(height)]
    assert sv.COLOURS["red"] in left and sv.COLOURS["red"] not in right


def test_written_rows_load_with_their_images_and_the_vision_schema(tmp_path):
    from steer.attributes import get_schema

    path = sv.write(tmp_path / "vision", 12, seed=3)
    records, report = load(path, schema=get_schema("vision"))
    assert report.format == "steer" and report.examples == 12
    user = records[0].messages[0]
    assert user.images[0].startswith(str(tmp_path / "vision" / "images")) and user.text in sv.QUESTIONS.values()
    from PIL import Image

    assert Image.open(user.images[0]).size == (sv.SIZE, sv.SIZE)
