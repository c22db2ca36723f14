"""A synthetic steerable corpus: questions about a small invented world, answers with known attributes.

Every response is composed from its attribute values (the ``helpsteer`` schema), so each attribute
is true by construction and can be checked by an oracle:

- verbosity ``v``: the answer has ``v + 1`` sentences (the answer, then supporting facts);
- correctness ``c``: a share ``c / 4`` of the stated facts is right (at 0 even the answer is wrong);
- complexity ``k``: every sentence is phrased in register ``k`` (plain words ... technical jargon);
- coherence ``h``: at 4 sentences are in order; lower levels shuffle them, and at 0-1 the answer is
  contradicted;
- helpfulness: 4 answers first; 3 answers after a preamble; 2 hedges; 1 talks around it; 0 declines.

The world, prompts and responses come from a seed: the same seed gives the same corpus.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from steer.attributes import get_schema

SCHEMA = get_schema("helpsteer")
SYLLABLES = ("ka", "lo", "mi", "ren", "zu", "tor", "vel", "qui", "nar", "bex", "sol", "dra", "fen", "ul", "pim", "gor")
COLOURS = ("red", "blue", "green", "amber", "violet", "silver", "black", "white")
FOODS = ("plums", "rice", "figs", "bread", "beans", "honey", "nuts", "fish")
KINDS = ("river", "mountain", "city", "forest", "lake", "valley", "island", "desert")
# One phrasing per complexity register: (subject/relation templates, filler).
REGISTERS = (
    {"colour": "{e} is {x}.", "age": "{e} is {x} years old.", "food": "{e} likes {x}.", "kind": "{e} is a {x}.",
     "sum": "{a} and {b} make {x}.", "extra": "That is it."},
    {"colour": "The colour of {e} is {x}.", "age": "{e} has an age of {x} years.", "food": "{e} mostly eats {x}.",
     "kind": "{e} is known as a {x}.", "sum": "Adding {a} and {b} gives {x}.", "extra": "That is the short version."},
    {"colour": "Observers describe the colour of {e} as {x}.", "age": "Records give the age of {e} as {x} years.",
     "food": "The usual diet of {e} consists of {x}.", "kind": "Geographers classify {e} as a {x}.",
     "sum": "The sum of {a} and {b} equals {x}.", "extra": "Sources broadly agree on this."},
    {"colour": "Spectral observation characterises {e} as predominantly {x}.",
     "age": "Chronological estimation establishes {e} at {x} years.",
     "food": "Dietary analysis indicates {e} predominantly consumes {x}.",
     "kind": "Topographical taxonomy categorises {e} as a {x}.",
     "sum": "Arithmetic summation of {a} and {b} yields {x}.", "extra": "Corroborating documentation substantiates this."},
    {"colour": "Photometric chromaticity quantification unequivocally characterises {e} as {x}.",
     "age": "Stratigraphic chronometric calibration determines {e} at {x} years.",
     "food": "Isotopic trophic-level assays demonstrate {e} preferentially metabolises {x}.",
     "kind": "Geomorphological ontological classification designates {e} a {x}.",
     "sum": "Additive integer composition of {a} with {b} deterministically evaluates to {x}.",
     "extra": "Independent epistemological corroboration substantiates this determination."},
)
PREAMBLES = {3: "Good question.", 2: "I think, though I am not certain,", 1: "That depends on many things.",
             0: "I would rather not answer that."}


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str
    colour: str
    age: int
    food: str


def world(seed: int = 0, size: int = 48) -> list[Entity]:
    """The invented entities and their facts."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < size:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize())
    return [Entity(n, rng.choice(KINDS), rng.choice(COLOURS), rng.randint(3, 400), rng.choice(FOODS))
            for n in sorted(names)]


def _wrong(rng: random.Random, field: str, right: object) -> object:
    pool = {"colour": COLOURS, "food": FOODS, "kind": KINDS}.get(field)
    if pool:
        return rng.choice([x for x in pool if x != right])
    return int(right) + rng.choice([-1, 1]) * rng.randint(2, 40)


def question(rng: random.Random, entities: list[Entity]) -> dict:
    """A prompt with its main fact (field and right value) and the facts that may support it."""
    if rng.random() < 0.2:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        return {"prompt": f"What is {a} plus {b}?", "field": "sum", "entity": None, "a": a, "b": b, "value": a + b,
                "support": []}
    e = rng.choice(entities)
    field = rng.choice(("colour", "age", "food", "kind"))
    text = {"colour": f"What colour is {e.name}?", "age": f"How old is {e.name}?",
            "food": f"What does {e.name} eat?", "kind": f"What kind of place is {e.name}?"}[field]
    support = [f for f in ("kind", "colour", "age", "food") if f != field]
    return {"prompt": text, "field": field, "entity": e, "value": getattr(e, field), "support": support}


def _sentence(register: dict, field: str, q: dict, value: object) -> str:
    if field == "sum":
        return register["sum"].format(a=q["a"], b=q["b"], x=value)
    return register[field].format(e=q["entity"].name, x=value)


def respond(q: dict, attrs: dict[str, int], rng: random.Random) -> str:
    """The response to ``q`` with exactly the attributes ``attrs``."""
    register = REGISTERS[attrs["complexity"]]
    if attrs["helpfulness"] == 0:
        return PREAMBLES[0]
    n = attrs["verbosity"] + 1
    fields = [q["field"]] + list(q["support"])
    facts: list[tuple[str, object]] = []
    for k in range(n):
        if k < len(fields):
            field = fields[k]
            right = q["value"] if k == 0 else getattr(q["entity"], field)
            facts.append((field, right))
        else:
            facts.append(("extra", None))
    checkable = [i for i, (f, _) in enumerate(facts) if f != "extra"]
    n_wrong = round((1 - attrs["correctness"] / 4) * len(checkable))
    # The main answer is the last fact to go wrong, so it is right whenever any fact is right.
    wrong = set(list(reversed(checkable))[:n_wrong])
    sentences = []
    for i, (field, right) in enumerate(facts):
        if field == "extra":
            sentences.append(register["extra"])
        else:
            value = _wrong(rng, field, right) if i in wrong else right
            sentences.append(_sentence(register, field, q, value))
    if attrs["helpfulness"] == 1:
        sentences[0] = PREAMBLES[1]  # talks around the question: the answer is never given
    elif attrs["helpfulness"] in (2, 3):
        sentences.insert(0, PREAMBLES[attrs["helpfulness"]])
    coherence = attrs["coherence"]
    if coherence < 4 and len(sentences) > 1:
        head, tail = sentences[:1], sentences[1:]
        cut = len(sentences) - 1 if coherence == 3 else 0
        rng.shuffle(tail)
        sentences = tail[:cut] + head + tail[cut:] if coherence < 3 else head + tail
    if coherence <= 1 and attrs["helpfulness"] >= 2:
        sentences.append("Actually, that is wrong." if coherence == 1 else "Actually, none of that is true.")
    return " ".join(sentences)


def corpus(n: int, seed: int = 0) -> list[dict]:
    """``n`` canonical ``steer`` rows (one user turn, one labelled assistant turn)."""
    rng = random.Random(seed)
    entities = world(seed)
    rows = []
    for i in range(n):
        q = question(rng, entities)
        attrs = {a.name: rng.randint(a.min, a.max) for a in SCHEMA.attributes}
        rows.append({"id": f"synth-{seed}-{i}", "source": "synth",
                     "messages": [{"role": "user", "content": q["prompt"]},
                                  {"role": "assistant", "content": respond(q, attrs, rng), "attributes": attrs}]})
    return rows


def write_corpus(out: Path, n: int, seed: int = 0, valid: int = 0) -> dict[str, Path]:
    """Write ``train.jsonl`` (and ``valid.jsonl`` with other prompts of the same world) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "train.jsonl"}
    rows = corpus(n + valid, seed)
    parts = {"train": rows[:n]}
    if valid:
        paths["valid"] = out / "valid.jsonl"
        parts["valid"] = rows[n:]
    for name, path in paths.items():
        with open(path, "w", encoding="utf-8") as handle:
            for row in parts[name]:
                handle.write(json.dumps(row) + "\n")
    return paths


def train_tokenizer(texts: list[str], out: Path, vocab_size: int = 512) -> Path:
    """A byte-level BPE tokenizer trained on ``texts`` (the ``tokenizers`` library), saved for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>", "<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out
