"""Preference pairs on the synthetic world (:mod:`steer.synth`), with known reasons for preferring.

Each pair is one question, steered by attribute levels drawn as the corpus draws them (rendered
identically into both sides' prompts), and two responses composed by :func:`steer.synth.respond`:

- ``correct``: the same attributes, except that the chosen response states every fact right
  (correctness 4) and the rejected one states them all wrong (correctness 0); the requested
  correctness level is drawn from 0-4, so DPO is asked to be right even where the steering asked for
  less, and only the facts differ between the sides;
- ``longer``: the length-only control ("A Long Way to Go"): the chosen response is longer (a higher
  verbosity) and each side's correctness is drawn on its own, so length is the only signal.

Responses always state facts (helpfulness 2-4) so that both kinds can be judged by the oracle.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from steer import synth

KINDS = ("correct", "longer")


def _steering(rng: random.Random) -> dict[str, int]:
    attrs = {a.name: rng.randint(a.min, a.max) for a in synth.SCHEMA.attributes}
    attrs["helpfulness"] = rng.randint(2, 4)
    return attrs


def pairs(n: int, seed: int = 0, kind: str = "correct", stream: int = 0) -> list[dict]:
    """``n`` canonical preference rows (``type: preference``) of ``kind`` about the world of ``seed``
    (another ``stream``: other questions and steering from the same world, for validation)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    rng = random.Random(f"{seed}-pairs-{kind}-{stream}")
    w = synth.world(seed)
    rows = []
    for i in range(n):
        q = synth.question(rng, w)
        attrs = _steering(rng)
        if kind == "correct":
            good, bad = {**attrs, "correctness": 4}, {**attrs, "correctness": 0}
        else:
            short = rng.randint(0, 3)
            good = {**attrs, "verbosity": rng.randint(short + 1, 4), "correctness": rng.choice((0, 4))}
            bad = {**attrs, "verbosity": short, "correctness": rng.choice((0, 4))}
        chosen, rejected = synth.respond(q, good, rng), synth.respond(q, bad, rng)
        if chosen == rejected:
            continue  # a question whose wrong and right answers read alike (none in this world, but cheap to keep out)
        rows.append({"type": "preference", "id": f"synth-{kind}-{seed}-{stream}-{i}", "system": synth.SYSTEM, "axis": kind,
                     "source": "synth", "prompt": [{"role": "user", "content": q["prompt"]}], "attributes": attrs,
                     "chosen": chosen, "rejected": rejected, "labels": {"chosen": good, "rejected": bad}})
    return rows


def write_pairs(path: Path, n: int, seed: int = 0, kind: str = "correct", stream: int = 0) -> Path:
    """:func:`pairs` as JSONL at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in pairs(n, seed, kind, stream):
            handle.write(json.dumps(row) + "\n")
    return path
