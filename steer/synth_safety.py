"""A synthetic safety world in PKU-SafeRLHF's exact schema, for the cost model's tiny recipe and tests:
a safe reply declines, an unsafe one complies (severity 1-3 at random), so safety is learnable from
the text; about one row in eight has two unsafe replies (the safer one is the less severe).

    steer data synth --out data/synth --safety 300   # pku-safety.jsonl, pku-safety-valid.jsonl,
                                                     # beavertails-safety.jsonl, beavertails-safety-valid.jsonl

The BeaverTails rows (one answer each, ``is_safe`` and the 14 ``category`` flags) tie each harm
category to words of the answer, so a moderation model's categories are learnable too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PKU_HARM_CATEGORIES = ("Endangering National Security", "Insulting Behavior", "Discriminatory Behavior",
                       "Endangering Public Health", "Copyright Issues", "Violence", "Drugs", "Privacy Violation",
                       "Economic Crime", "Mental Manipulation", "Human Trafficking", "Physical Harm", "Sexual Content",
                       "Cybercrime", "Disrupting Public Order", "Environmental Damage", "Psychological Harm",
                       "White-Collar Crime", "Animal Abuse")


def _categories(*on: str) -> dict[str, bool]:
    return {c: c in on for c in PKU_HARM_CATEGORIES}


SAFE_REPLIES = ("I can't help with that, but I can point you to safe resources.", "Please stay safe and talk to someone you trust.",
                "That could hurt people, so I won't explain it.", "A safer idea is to ask a professional for help.")
UNSAFE_REPLIES = ("Sure, here is exactly how to do it, step by step.", "Easy: get the tools and just do it tonight.",
                  "Here's the trick nobody tells you: hide it well.", "Do it quickly and make sure no one sees you.")


BEAVERTAILS_CATEGORIES = ("animal_abuse", "child_abuse", "controversial_topics,politics",
                          "discrimination,stereotype,injustice", "drug_abuse,weapons,banned_substance",
                          "financial_crime,property_crime,theft", "hate_speech,offensive_language",
                          "misinformation_regarding_ethics,laws_and_safety", "non_violent_unethical_behavior",
                          "privacy_violation", "self_harm", "sexually_explicit,adult_content",
                          "terrorism,organized_crime", "violence,aiding_and_abetting,incitement")
# the categories the synthetic answers use, each with the words that give it away (one answer may have two)
TOPICS = {"animal_abuse": "the neighbour's dog", "privacy_violation": "their password",
          "financial_crime,property_crime,theft": "the shop's till", "drug_abuse,weapons,banned_substance": "the pills"}


def rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` PKU-SafeRLHF rows in the upstream schema (see the module docstring); one reply is safe in
    seven rows of eight, both are unsafe in the eighth."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        safe = [rng.random() < 0.5, False]
        safe[1] = not safe[0] if rng.random() < 0.75 else False
        texts = [rng.choice(SAFE_REPLIES if ok else UNSAFE_REPLIES) + f" (ref {k}-{i})" for i, ok in enumerate(safe)]
        sev = [0 if ok else rng.randint(1, 3) for ok in safe]
        safer = 0 if (safe[0] and not safe[1]) or (not safe[0] and not safe[1] and sev[0] <= sev[1]) else 1
        cats = [_categories() if ok else _categories(rng.choice(PKU_HARM_CATEGORIES)) for ok in safe]
        out.append({"prompt": f"Question {k}: how do I do the risky thing number {rng.randint(1, 99)}?",
                     "response_0": texts[0], "response_1": texts[1], "prompt_source": "synthetic",
                    "response_0_source": "synthetic", "response_1_source": "synthetic",
                     "is_response_0_safe": safe[0], "is_response_1_safe": safe[1],
                     "response_0_harm_category": cats[0], "response_1_harm_category": cats[1],
                     "response_0_severity_level": sev[0], "response_1_severity_level": sev[1],
                     "better_response_id": rng.randint(0, 1), "safer_response_id": safer,
                     "response_0_sha256": f"{k:064x}", "response_1_sha256": f"{k + n:064x}"})
    return out

def beavertails_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` BeaverTails rows in the upstream schema (``prompt, response, category, is_safe``): half the
    answers safe (no category), the rest unsafe with one or two of :data:`TOPICS`' categories, named in the answer."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        topics = rng.sample(sorted(TOPICS), 1 if rng.random() < 0.7 else 2)
        safe = rng.random() < 0.5
        about = " and ".join(TOPICS[t] for t in topics)
        # a safe answer declines without naming the target; an unsafe one names it last (the head reads the end)
        reply = f"(ref {k}) " + (rng.choice(SAFE_REPLIES) if safe else rng.choice(UNSAFE_REPLIES) + f" Go for {about}.")
        out.append({"prompt": f"Question {k}: tell me what to do, risky thing number {rng.randint(1, 99)}.",
                    "response": reply, "category": {c: (not safe and c in topics) for c in BEAVERTAILS_CATEGORIES},
                    "is_safe": safe})
    return out


def write(path: Path, n: int, seed: int = 0, form: str = "pku") -> Path:
    """:func:`rows` (``form`` ``pku``) or :func:`beavertails_rows` (``beavertails``) as JSONL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    made = rows(n, seed) if form == "pku" else beavertails_rows(n, seed)
    with open(path, "w", encoding="utf-8") as handle:
        for row in made:
            handle.write(json.dumps(row) + "\n")
    return path
