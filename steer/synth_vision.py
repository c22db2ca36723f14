"""A visual synthetic world: small images drawn with PIL whose facts are known (a shape, its colour, how
many, where), questions about them, and answers composed from two attributes, so that steering a
vision-language model can be measured the way the text quickstart measures a text one.

- ``visual_faithfulness`` f (0-4): a share f / 4 of the stated facts agree with the image (rounded half
  to even); a wrong fact states a value the image does not show (another colour, shape, count or side);
  the asked fact goes wrong last, so the answer contradicts the image only when every fact does;
- ``verbosity`` v (0-4): the answer has v + 1 sentences (the asked fact, then the other facts, then
  remarks).

Both are judged back from any text by :func:`judge` against the image's facts (the ``oracle``), and
the images are written as PNG files beside the rows (``image`` relative to the JSONL file):

    rows = synth_vision.write(Path("data/vision"), 200)   # data/vision/train.jsonl, data/vision/images/
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from steer.attributes import get_schema

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("square", "circle", "triangle")
SIDES = ("left", "right")
NUMBERS = {1: "one", 2: "two", 3: "three"}
FIELDS = ("colour", "shape", "count", "side")
QUESTIONS = {"colour": "What colour are the shapes?", "shape": "Which shape is in the picture?",
             "count": "How many shapes are there?", "side": "On which side are the shapes?"}
SENTENCES = {"colour": "The shapes are {x}.", "shape": "Each shape is a {x}.", "count": "There are {x} shapes.",
             "side": "They sit on the {x} side."}
REMARKS = ("That is all I see.", "The background is white.", "The picture is small.")
SCHEMA = get_schema("vision")  # visual_faithfulness, verbosity
SIZE = 32


def facts(rng: random.Random) -> dict:
    """A random image's facts."""
    return {"colour": rng.choice(sorted(COLOURS)), "shape": rng.choice(SHAPES), "count": rng.randint(1, 3),
            "side": rng.choice(SIDES)}


def draw(fact: dict, size: int = SIZE):
    """The image of ``fact``: ``count`` shapes of one colour stacked on one side of a white square."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(img)
    cell = size // 4
    x0 = 2 if fact["side"] == "left" else size - cell - 2
    for k in range(fact["count"]):
        y0 = 2 + k * (cell + 2)
        box = (x0, y0, x0 + cell, y0 + cell)
        colour = COLOURS[fact["colour"]]
        if fact["shape"] == "square":
            pen.rectangle(box, fill=colour)
        elif fact["shape"] == "circle":
            pen.ellipse(box, fill=colour)
        else:
            pen.polygon([(x0 + cell // 2, y0), (x0, y0 + cell), (x0 + cell, y0 + cell)], fill=colour)
    return img


def _value(field: str, value: object) -> str:
    return NUMBERS[value] if field == "count" else str(value)  # type: ignore[index]


def _wrong(field: str, value: object, rng: random.Random) -> object:
    options = {"colour": sorted(COLOURS), "shape": list(SHAPES), "count": [1, 2, 3], "side": list(SIDES)}[field]
    return rng.choice([o for o in options if o != value])


def respond(fact: dict, asked: str, attrs: dict[str, int], rng: random.Random) -> str:
    """An answer about ``fact`` to the question on ``asked`` with the given attribute values."""
    order = [asked, *[f for f in FIELDS if f != asked]]
    n = attrs["verbosity"] + 1
    fields = order[: min(n, len(order))]
    wrong = len(fields) - round(len(fields) * attrs["visual_faithfulness"] / 4)
    wrong_fields = set(list(reversed(fields))[:wrong])  # supporting facts go wrong first, the asked one last
    sentences = [SENTENCES[f].format(x=_value(f, _wrong(f, fact[f], rng) if f in wrong_fields else fact[f]))
                 for f in fields]
    sentences += list(REMARKS[: n - len(sentences)])
    return " ".join(sentences)


_PATTERNS = {f: re.compile(re.escape(t).replace(re.escape("{x}"), r"(?P<x>\w+)") + "$") for f, t in SENTENCES.items()}
_WORDS = {v: k for k, v in NUMBERS.items()}


def judge(fact: dict, text: str) -> dict:
    """The realised attributes of ``text`` about the image of ``fact``: visual faithfulness (4 x the share
    of stated facts the image agrees with; 0 when none is stated) and verbosity (sentences - 1, at most 4)."""
    sentences = [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s]
    stated = []
    for sentence in sentences:
        for field, pattern in _PATTERNS.items():
            m = pattern.match(sentence)
            if m:
                value: object = _WORDS.get(m["x"], m["x"]) if field == "count" else m["x"]
                stated.append(value == fact[field])
                break
    return {"visual_faithfulness": 4 * sum(stated) / len(stated) if stated else 0.0,
            "verbosity": min(4, max(0, len(sentences) - 1))}


def rows(n: int, seed: int = 0, images: str = "images") -> list[tuple[dict, object]]:
    """``n`` (row, image) pairs: a canonical ``steer`` row (the image part's path under ``images``, the
    question, the answer labelled with its attributes, the facts in ``meta``) and its PIL image."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        fact = facts(rng)
        asked = rng.choice(FIELDS)
        attrs = {"visual_faithfulness": rng.choice([0, 1, 2, 3, 4, 4, 4]), "verbosity": rng.randint(0, 4)}
        name = f"{images}/img-{seed}-{k}.png"
        row = {"id": f"vision-{seed}-{k}", "source": "synth-vision", "meta": {"facts": fact, "field": asked},
               "messages": [{"role": "user", "content": [{"type": "image", "image": name},
                                                         {"type": "text", "text": QUESTIONS[asked]}]},
                            {"role": "assistant", "content": respond(fact, asked, attrs, rng), "attributes": attrs}]}
        out.append((row, draw(fact)))
    return out


def _write(folder: Path, name: str, items: list[tuple[dict, object]], key: str) -> Path:
    """``items`` (row, PIL image) as ``folder/name``, each image saved where its row's first message
    (under ``key``: ``messages`` or a pair's ``prompt``) points, in ``folder/images``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "w", encoding="utf-8") as handle:
        for row, image in items:
            image.save(folder / row[key][0]["content"][0]["image"])  # type: ignore[attr-defined]
            handle.write(json.dumps(row) + "\n")
    return path


def write(folder: Path, n: int, seed: int = 0, name: str = "train.jsonl") -> Path:
    """:func:`rows` as ``folder/name`` with the PNGs in ``folder/images``."""
    return _write(folder, name, rows(n, seed), "messages")


def pairs(n: int, seed: int = 0, images: str = "images") -> list[tuple[dict, object]]:
    """``n`` (pair row, image) of canonical preference pairs: the faithful answer (visual faithfulness 4)
    chosen over one that contradicts the image (0), at the same verbosity."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        fact = facts(rng)
        asked = rng.choice(FIELDS)
        verbosity = rng.randint(0, 4)
        name = f"{images}/pair-{seed}-{k}.png"
        row = {"type": "preference", "id": f"vision-pair-{seed}-{k}", "source": "synth-vision",
               "meta": {"facts": fact, "field": asked},
               "prompt": [{"role": "user", "content": [{"type": "image", "image": name},
                                                       {"type": "text", "text": QUESTIONS[asked]}]}],
               "chosen": respond(fact, asked, {"visual_faithfulness": 4, "verbosity": verbosity}, rng),
               "rejected": respond(fact, asked, {"visual_faithfulness": 0, "verbosity": verbosity}, rng)}
        out.append((row, draw(fact)))
    return out


def write_pairs(folder: Path, n: int, seed: int = 0, name: str = "pairs.jsonl") -> Path:
    """:func:`pairs` as ``folder/name`` with the PNGs in ``folder/images``."""
    return _write(folder, name, pairs(n, seed), "prompt")


def write_prompts(folder: Path, n: int, seed: int = 0, name: str = "prompts.jsonl") -> Path:
    """``n`` held-out questions about new images, for ``steer eval steerability --judge oracle``: rows
    with ``messages`` (the image part's path relative to the file) and the image's ``facts``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-prompts")
    path = folder / name
    with open(path, "w", encoding="utf-8") as handle:
        for k in range(n):
            fact, asked = facts(rng), rng.choice(FIELDS)
            image = f"images/prompt-{seed}-{k}.png"
            draw(fact).save(folder / image)
            row = {"id": f"vision-prompt-{seed}-{k}", "world": "vision", "facts": fact, "field": asked,
                   "question": QUESTIONS[asked],
                   "messages": [{"role": "user", "content": [{"type": "image", "image": image},
                                                             {"type": "text", "text": QUESTIONS[asked]}]}]}
            handle.write(json.dumps(row) + "\n")
    return path
