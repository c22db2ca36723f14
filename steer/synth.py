"""A synthetic steerable corpus: questions about a small invented world, answers with known attributes.

Every response is composed from its attribute values (the ``helpsteer`` schema), so each attribute
is true by construction and an oracle (:func:`judge`) can measure it in any text:

- verbosity ``v``: the answer has ``v + 1`` sentences (the answer, then supporting facts or remarks);
- correctness ``c``: a share ``c / 4`` of the stated facts is right (rounded half to even); supporting
  facts go wrong first and the answer last, so the answer is wrong only when every fact is; a wrong
  fact states its field's false value (``FALSE_VALUES``: grey, sand, a ruin, 100 years, ...), which
  nothing in the world has;
- complexity ``k``: every sentence is phrased in register ``k`` (plain words ... technical jargon);
- coherence ``h``: 4 in order; 3 the answer comes last; 2 shuffled with the answer not first;
  1 and 0 add a sentence that contradicts what came before;
- helpfulness: 4 answers first; 3 after a preamble; 2 hedges; 1 talks around it; 0 declines.

The world is closed and deliberately small (six entities with four facts each, four invented
words, sums up to 3 + 3) so that a tiny model learns its facts in minutes; correctness labels lean
towards 4 (``CORRECTNESS_WEIGHTS``) so that stated facts are mostly right. The
tokenizer trained on the corpus (:func:`write_dataset`) gives every ``name:level`` of the schema a
token of its own, so a level is one embedding the model reads, not a digit shared by every attribute.
Held-out prompts come from another random stream (:func:`prompts`): the same closed world, asked
with attribute combinations training did not see. The same seed gives the same world, prompts and
responses.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steer.attributes import get_schema

SCHEMA = get_schema("helpsteer")
SYSTEM = "Answer questions about the world."
SYLLABLES = ("ka", "lo", "mi", "ren", "zu", "tor", "vel", "qui", "nar", "bex", "sol", "dra", "fen", "ul", "pim", "gor")
VALUES = {
    "colour": ("red", "blue", "green", "amber", "violet", "silver", "black", "white"),
    "food": ("plums", "rice", "figs", "bread", "beans", "honey", "nuts", "fish"),
    "kind": ("river", "mountain", "city", "forest", "lake", "valley", "island", "desert"),
    "meaning": ("a small boat", "a kind of bread", "a cold wind", "a loud bird", "an old song", "a wooden box",
                "a bright star", "a heavy stone"),
}
# What a wrong fact states: one value per field that nothing in the world has (ages are 2-99, sums 2-6)
FALSE_VALUES = {"colour": "grey", "food": "sand", "kind": "ruin", "meaning": "a broken wheel", "age": 100, "sum": 0}
FACTS = ("kind", "colour", "age", "food")  # the facts every entity has, in the order an answer lists them
SUM_MAX = 3
QUESTIONS = {"colour": "What colour is {e}?", "age": "How old is {e}?", "food": "What does {e} eat?",
             "kind": "What kind of place is {e}?", "sum": "What is {a} plus {b}?", "meaning": "What does {e} mean?"}
# One phrasing per complexity register: a template per fact, and remarks that pad without facts.
REGISTERS = (
    {"colour": "{e} is {x}.", "age": "{e} is {x} years old.", "food": "{e} likes {x}.", "kind": "{e} is a {x}.",
     "sum": "{a} and {b} make {x}.", "meaning": "{e} means {x}.",
     "extra": ("That is it.", "It is easy.", "You can check it.", "I hope it helps.")},
    {"colour": "The colour of {e} is {x}.", "age": "{e} has an age of {x} years.", "food": "{e} mostly eats {x}.",
     "kind": "{e} is known as a {x}.", "sum": "Adding {a} and {b} gives {x}.", "meaning": "The word {e} means {x}.",
     "extra": ("That is the short version.", "Most people know this.", "It is easy to check.", "Ask if you want more.")},
    {"colour": "Observers describe the colour of {e} as {x}.", "age": "Records give the age of {e} as {x} years.",
     "food": "The usual diet of {e} consists of {x}.", "kind": "Geographers classify {e} as a {x}.",
     "sum": "The sum of {a} and {b} equals {x}.", "meaning": "In common usage {e} denotes {x}.",
     "extra": ("Sources broadly agree on this.", "This is well documented.", "Several accounts confirm it.",
               "The details are consistent.")},
    {"colour": "Spectral observation characterises {e} as predominantly {x}.",
     "age": "Chronological estimation establishes {e} at {x} years.",
     "food": "Dietary analysis indicates {e} predominantly consumes {x}.",
     "kind": "Topographical taxonomy categorises {e} as a {x}.",
     "sum": "Arithmetic summation of {a} and {b} yields {x}.", "meaning": "Lexicographically {e} signifies {x}.",
     "extra": ("Corroborating documentation substantiates this.", "Methodological scrutiny supports the conclusion.",
               "Empirical verification remains straightforward.", "Comparative analysis reinforces this.")},
    {"colour": "Photometric chromaticity quantification unequivocally characterises {e} as {x}.",
     "age": "Stratigraphic chronometric calibration determines {e} at {x} years.",
     "food": "Isotopic trophic assays demonstrate {e} preferentially metabolises {x}.",
     "kind": "Geomorphological ontological classification designates {e} a {x}.",
     "sum": "Additive integer composition of {a} with {b} deterministically evaluates to {x}.",
     "meaning": "Etymological semantic analysis establishes {e} as designating {x}.",
     "extra": ("Independent epistemological corroboration substantiates this determination.",
               "Rigorous methodological triangulation reinforces this inference.",
               "Quantitative verification procedures remain computationally tractable.",
               "Comparative historiographical analysis consolidates this conclusion.")},
)
PREAMBLES = {3: "Good question.", 2: "I think, though I am not certain,", 1: "That depends on many things.",
             0: "I would rather not answer that."}
CORRECTNESS_WEIGHTS = (0.3, 0.1, 0.1, 0.1, 0.4)
# A quarter of the questions are sums and a quarter definitions, the rest about an entity: a question
# type asked less often is learnt last by a tiny model (at 0.2 / 0.1 its sums and definitions lagged)
QUESTION_MIX = {"sum": 0.25, "meaning": 0.25}
# One token per attribute level ("correctness:0"): a tiny model then reads a level from one embedding
# instead of composing it from a name, a colon and a digit that every attribute shares
ATTRIBUTE_TOKENS = [f"{a.name}:{v}" for a in SCHEMA.attributes for v in range(a.min, a.max + 1)]
CONTRADICTIONS = {1: "Actually, that is wrong.", 0: "Actually, none of that is true."}


@dataclass(frozen=True)
class World:
    """The invented entities (name -> facts) and words (word -> meaning) the questions are about."""

    entities: dict[str, dict[str, object]]
    words: dict[str, str]


def _names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def world(seed: int = 0, size: int = 6, words: int = 4) -> World:
    """The invented world of ``seed``: ``size`` entities with four facts each and ``words`` words."""
    rng = random.Random(seed)
    taken: set[str] = set()
    entities = {n: {"kind": rng.choice(VALUES["kind"]), "colour": rng.choice(VALUES["colour"]),
                    "age": rng.randint(2, 99), "food": rng.choice(VALUES["food"])} for n in _names(rng, size, taken)}
    meanings = rng.sample(VALUES["meaning"], words)
    return World(entities, {w.lower(): m for w, m in zip(_names(rng, words, taken), meanings)})


def truth(q: dict, field: str, subject: object) -> object:
    """The right value of ``field`` for ``subject`` in question ``q`` (None: ``q`` says nothing about it)."""
    if field == "sum":
        return sum(subject) if isinstance(subject, tuple) else None  # arithmetic is true everywhere
    if subject != q["subject"]:
        return None
    return q["facts"].get(field)


def question(rng: random.Random, w: World) -> dict:
    """A prompt with its field, subject, the subject's facts and the facts that may support the answer."""
    r = rng.random()
    if r < QUESTION_MIX["sum"]:
        a, b = rng.randint(1, SUM_MAX), rng.randint(1, SUM_MAX)
        return {"prompt": QUESTIONS["sum"].format(a=a, b=b), "field": "sum", "subject": (a, b), "facts": {},
                "support": []}
    if r < QUESTION_MIX["sum"] + QUESTION_MIX["meaning"]:
        word = rng.choice(sorted(w.words))
        return {"prompt": QUESTIONS["meaning"].format(e=word), "field": "meaning", "subject": word,
                "facts": {"meaning": w.words[word]}, "support": []}
    name, field = rng.choice(sorted(w.entities)), rng.choice(FACTS)
    return {"prompt": QUESTIONS[field].format(e=name), "field": field, "subject": name,
            "facts": dict(w.entities[name]), "support": [f for f in FACTS if f != field]}


def wrong(field: str) -> object:
    """The wrong value a response states for ``field``: the world's one false value of that field
    (:data:`FALSE_VALUES`), never true of anything, so a tiny model learns one false value per field
    instead of a second table of per-entity facts."""
    return FALSE_VALUES[field]


def _sentence(register: dict, field: str, subject: object, value: object) -> str:
    if field == "sum":
        a, b = subject  # type: ignore[misc]
        return register["sum"].format(a=a, b=b, x=value)
    return register[field].format(e=subject, x=value)


def _arrange(sentences: list[str], coherence: int) -> list[str]:
    """Order the sentences (the answer first) as ``coherence`` says: 3 and 0 put the answer last,
    2 in the middle (last when there are only two)."""
    if len(sentences) < 2 or coherence in (4, 1):
        return sentences
    answer, rest = sentences[0], sentences[1:]
    at = len(rest) if coherence in (3, 0) else max(1, len(rest) // 2)
    return rest[:at] + [answer] + rest[at:]


def states_facts(attrs: dict[str, int]) -> bool:
    """Whether a response with ``attrs`` states any fact (evasions at helpfulness 0, and at 1 with one
    sentence, state none)."""
    return attrs["helpfulness"] >= 2 or (attrs["helpfulness"] == 1 and attrs["verbosity"] >= 1)


def respond(q: dict, attrs: dict[str, int], rng: random.Random) -> str:
    """The response to ``q`` with exactly the attributes ``attrs``."""
    register = REGISTERS[attrs["complexity"]]
    if attrs["helpfulness"] == 0:
        return PREAMBLES[0]
    n = attrs["verbosity"] + 1
    fields = [q["field"]] + list(q["support"])[: n - 1]
    n_wrong = round((1 - attrs["correctness"] / 4) * len(fields))
    wrong_at = set(range(len(fields) - n_wrong, len(fields)))  # supporting facts go wrong first, the answer last
    sentences = []
    for i, field in enumerate(fields):
        right = truth(q, field, q["subject"])
        sentences.append(_sentence(register, field, q["subject"], wrong(field) if i in wrong_at else right))
    sentences += list(register["extra"][: n - len(fields)])
    if attrs["helpfulness"] == 1:
        sentences[0] = PREAMBLES[1]  # talks around the question: the answer is never given
    sentences = _arrange(sentences, attrs["coherence"])
    if attrs["helpfulness"] in (2, 3):
        sentences.insert(0, PREAMBLES[attrs["helpfulness"]])
    if attrs["coherence"] in CONTRADICTIONS:
        sentences.append(CONTRADICTIONS[attrs["coherence"]])
    return " ".join(sentences)


def corpus(n: int, seed: int = 0) -> list[dict]:
    """``n`` canonical ``steer`` rows (one user turn, one labelled assistant turn)."""
    rng = random.Random(seed)
    w = world(seed)
    rows = []
    for i in range(n):
        q = question(rng, w)
        attrs = {a.name: rng.randint(a.min, a.max) for a in SCHEMA.attributes}
        attrs["correctness"] = rng.choices(range(5), CORRECTNESS_WEIGHTS)[0]
        if not states_facts(attrs):
            attrs["correctness"] = 0  # HelpSteer: "inclusion of all pertinent facts"; none are included
        rows.append({"id": f"synth-{seed}-{i}", "source": "synth", "system": SYSTEM,
                     "messages": [{"role": "user", "content": q["prompt"]},
                                  {"role": "assistant", "content": respond(q, attrs, rng), "attributes": attrs}]})
    return rows


def write_corpus(out: Path, n: int, seed: int = 0, valid: int = 0) -> dict[str, Path]:
    """Write ``train.jsonl`` (and ``valid.jsonl``: more rows from the same world) into ``out``."""
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


def prompts(n: int, seed: int = 0, *, stream: int = 1) -> list[dict]:
    """``n`` evaluation questions about the world of ``seed``, from another random stream than :func:`corpus`."""
    rng = random.Random(f"{seed}-prompts-{stream}")
    w = world(seed)
    return [question(rng, w) for _ in range(n)]


def write_dataset(out: Path, n: int, seed: int = 0, valid: int = 0, vocab_size: int = 1024) -> dict[str, Path]:
    """:func:`write_corpus` plus a tokenizer trained on it in ``out/tokenizer``."""
    paths = write_corpus(out, n, seed=seed, valid=valid)
    texts = [m["content"] for p in paths.values() for line in open(p, encoding="utf-8")
             for m in json.loads(line)["messages"]]
    texts += [SYSTEM, SCHEMA.render({}), "System", "User", "Assistant"] * 100  # the template's own text
    paths["tokenizer"] = train_tokenizer(texts, out / "tokenizer", vocab_size, words=ATTRIBUTE_TOKENS)
    return paths


def write_prompts(path: Path, n: int, seed: int = 0, stream: int = 1) -> Path:
    """:func:`prompts` as JSONL (``prompt`` plus what the oracles need), for ``steer eval steerability``;
    another ``stream`` gives other questions (stream 2: ``steer train rl``'s rollout prompts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = "eval" if stream == 1 else f"s{stream}"
    with open(path, "w", encoding="utf-8") as handle:
        for i, q in enumerate(prompts(n, seed, stream=stream)):
            handle.write(json.dumps({"id": f"synth-{name}-{seed}-{i}", **q}) + "\n")
    return path


def write_all(out: Path, n: int, *, seed: int = 0, valid: int = 0, vocab_size: int | None = 1024,
              prompts: int = 0) -> dict[str, Path]:
    """``steer data synth``: the corpus, a tokenizer trained on it (``vocab_size`` None: none) and
    ``prompts`` held-out questions in ``prompts.jsonl``."""
    paths = (write_dataset(out, n, seed=seed, valid=valid, vocab_size=vocab_size) if vocab_size
             else write_corpus(out, n, seed=seed, valid=valid))
    if prompts:
        paths["prompts"] = write_prompts(out / "prompts.jsonl", prompts, seed=seed)
    return paths


def train_tokenizer(texts: list[str], out: Path, vocab_size: int = 512, words: Sequence[str] = ()) -> Path:
    """A byte-level BPE tokenizer trained on ``texts`` (the ``tokenizers`` library), saved for transformers;
    each of ``words`` is one token of its own (within ``vocab_size``)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<pad>", "<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(words), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(w, normalized=False, special=False) for w in words])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out


# ---------------------------------------------------------------------------------------------
# Oracles: measure the attributes of any text (a generated answer) against the world.

_VALUE_PATTERNS = {"e": r"(?P<e>[A-Za-z]+)", "a": r"(?P<a>\d+)", "b": r"(?P<b>\d+)"}


def _pattern(template: str, field: str) -> re.Pattern:
    x = "|".join(re.escape(v) for v in (*VALUES[field], FALSE_VALUES[field])) if field in VALUES else r"\d+"
    parts = re.split(r"(\{[eabx]\})", template)
    regex = "".join(_VALUE_PATTERNS.get(p[1], f"(?P<x>{x})") if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex + "$")


PATTERNS = [(level, field, _pattern(reg[field], field))
            for level, reg in enumerate(REGISTERS) for field in ("colour", "age", "food", "kind", "sum", "meaning")]
EXTRAS = {text: level for level, reg in enumerate(REGISTERS) for text in reg["extra"]}


@dataclass
class Parsed:
    """One sentence of an answer: its register, field, subject and stated value (None: not a fact)."""

    text: str
    register: int | None
    field: str | None = None
    subject: object = None
    value: object = None


def parse_sentence(text: str) -> Parsed:
    """Recognise a sentence of any register (an unknown sentence has no register and no fact)."""
    if text in EXTRAS:
        return Parsed(text, EXTRAS[text])
    for level, field, pattern in PATTERNS:
        m = pattern.match(text)
        if m:
            groups = m.groupdict()
            subject: object = (int(groups["a"]), int(groups["b"])) if field == "sum" else groups["e"]
            value: object = int(groups["x"]) if field in ("age", "sum") else groups["x"]
            return Parsed(text, level, field, subject, value)
    return Parsed(text, None)


def split_answer(text: str) -> tuple[list[str], set[str]]:
    """The sentences of an answer, and the preambles / contradictions found (kept apart)."""
    markers = set()
    for phrase in (*PREAMBLES.values(), *CONTRADICTIONS.values()):
        if phrase in text:
            markers.add(phrase)
            text = text.replace(phrase, " ")
    return [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s.strip()], markers


def judge(q: dict, text: str) -> dict:
    """The realised attributes of ``text`` as the answer to ``q``, plus whether the answer is right.

    correctness is a float: 4 x the share of stated facts that are right, and 0 when no fact is
    stated (nothing pertinent is included, as the corpus labels it); ``answer_right`` is True only when the asked fact is stated with its right value.
    """
    sentences, markers = split_answer(text)
    parsed = [parse_sentence(s) for s in sentences]
    facts = [p for p in parsed if p.field is not None]
    right = [p.value == truth(q, p.field, p.subject) for p in facts]  # type: ignore[arg-type]
    answer = next((p for p in facts if p.field == q["field"] and p.subject == q["subject"]), None)
    registers = [p.register for p in parsed if p.register is not None]
    position = parsed.index(answer) if answer is not None else None
    return {
        "helpfulness": _helpfulness(markers, answer is not None),
        "correctness": 4 * sum(right) / len(right) if right else 0.0,
        "coherence": _coherence(markers, position, len(parsed)),
        "complexity": statistics.median(registers) if registers else None,
        "verbosity": min(4, max(0, len(parsed) - 1)),
        "answer_right": answer is not None and answer.value == truth(q, answer.field, answer.subject),  # type: ignore[arg-type]
    }


def _helpfulness(markers: set[str], answered: bool) -> int:
    if PREAMBLES[0] in markers and not answered:
        return 0
    if PREAMBLES[1] in markers and not answered:
        return 1
    for level in (2, 3):
        if PREAMBLES[level] in markers:
            return level
    return 4 if answered else 1


def _coherence(markers: set[str], position: int | None, n: int) -> int:
    for level in (0, 1):
        if CONTRADICTIONS[level] in markers:
            return level
    if position is None or position == 0:
        return 4
    return 3 if position == n - 1 else 2
