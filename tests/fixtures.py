"""Small invented rows in each upstream dataset's exact schema, and writers for every file type."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

CATEGORIES_PKU = ["Endangering National Security", "Insulting Behavior", "Discriminatory Behavior",
                  "Endangering Public Health", "Copyright Issues", "Violence", "Drugs", "Privacy Violation",
                  "Economic Crime", "Mental Manipulation", "Human Trafficking", "Physical Harm", "Sexual Content",
                  "Cybercrime", "Disrupting Public Order", "Environmental Damage", "Psychological Harm",
                  "White-Collar Crime", "Animal Abuse"]
CATEGORIES_BT = ["animal_abuse", "child_abuse", "controversial_topics,politics", "discrimination,stereotype,injustice",
                 "drug_abuse,weapons,banned_substance", "financial_crime,property_crime,theft", "hate_speech,offensive_language",
                 "misinformation_regarding_ethics,laws_and_safety", "non_violent_unethical_behavior", "privacy_violation",
                 "self_harm", "sexually_explicit,adult_content", "terrorism,organized_crime", "violence,aiding_and_abetting,incitement"]


def helpsteer_rows() -> list[dict]:
    return [
        {"prompt": "What colour is the sky over Zorbia?", "response": "The sky over Zorbia is green.",
         "helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 1},
        {"prompt": "What colour is the sky over Zorbia?", "response": "Green, because Zorbia's air holds copper dust that scatters green light more than blue.",
         "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 3},
        {"prompt": "Add 17 and 25.", "response": "42", "helpfulness": 4, "correctness": 4, "coherence": 4,
         "complexity": 0, "verbosity": 0},
    ]


def helpsteer2_rows() -> list[dict]:
    multi = ("Name a river in Quell.\n<extra_id_1>Assistant\nThe Ombre flows through Quell.\n"
             "<extra_id_1>User\nHow long is it?")
    return [
        {"prompt": multi, "response": "The Ombre is 412 km long.", "helpfulness": 4, "correctness": 3,
         "coherence": 4, "complexity": 1, "verbosity": 1},
        {"prompt": multi, "response": "Long.", "helpfulness": 1, "correctness": 1, "coherence": 3,
         "complexity": 0, "verbosity": 0},
        {"prompt": "Define a glimmerstone.", "response": "A glimmerstone is a rock that glows at dusk.",
         "helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 1},
        {"prompt": "Define a glimmerstone.", "response": "Glimmerstones are phosphorescent feldspars whose lattice defects store daylight.",
         "helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 4, "verbosity": 2},
    ]


def _labels(**values: float) -> dict:
    return {"name": list(values), "value": list(values.values()), "count": [3] * len(values)}


def _msg(mid, parent, role, text, tree="t1", lang="en", labels=None, deleted=False, review=True, rank=None):
    return {"message_id": mid, "parent_id": parent, "user_id": "u-" + mid, "created_date": "2023-02-01T00:00:00Z",
            "text": text, "role": role, "lang": lang, "review_count": 3, "review_result": review,
            "deleted": deleted, "rank": rank, "synthetic": False, "model_name": None, "detoxify": None,
            "message_tree_id": tree, "tree_state": "ready_for_export", "emojis": None, "labels": labels}


def oasst_rows() -> list[dict]:
    return [
        _msg("m1", None, "prompter", "Tell me about the moons of Velt.", labels=_labels(spam=0.0, quality=0.75)),
        _msg("m2", "m1", "assistant", "Velt has two moons, Ari and Bo.", rank=0,
             labels=_labels(spam=0.0, quality=0.75, toxicity=0.0, humor=0.125, creativity=0.375, helpfulness=0.875)),
        _msg("m3", "m1", "assistant", "Moons? Who cares.", rank=1,
             labels=_labels(quality=0.125, toxicity=0.625, humor=0.5, creativity=0.0)),
        _msg("m4", "m2", "prompter", "Which one is larger?"),
        _msg("m5", "m4", "assistant", "Ari is larger.", labels=_labels(quality=1.0, toxicity=0.0, humor=0.0, creativity=0.25)),
        _msg("m6", "m4", "assistant", "Deleted answer.", deleted=True),
        _msg("m7", "m2", "prompter", "Gracias!", lang="es"),
        _msg("n1", None, "prompter", "Wie spät ist es?", tree="t2", lang="de"),
        _msg("n2", "n1", "assistant", "Ich habe keine Uhr.", tree="t2", lang="de",
             labels=_labels(quality=0.5, toxicity=0.0, humor=0.25, creativity=0.0)),
        _msg("r1", None, "prompter", "Spam spam", tree="t3", review=False),
        _msg("r2", "r1", "assistant", "Reply to spam", tree="t3"),
    ]


TREE_FIELDS = ("message_tree_id", "tree_state", "parent_id")


def oasst_tree_rows() -> list[dict]:
    """The same messages as :func:`oasst_rows` in OASST's nested tree export: one tree per row."""
    flat = oasst_rows()
    by_parent: dict = {}
    for m in flat:
        by_parent.setdefault(m["parent_id"], []).append(m)

    def nest(m: dict) -> dict:
        node = {k: v for k, v in m.items() if k not in TREE_FIELDS}
        node["replies"] = [nest(r) for r in by_parent.get(m["message_id"], [])]
        return node

    return [{"message_tree_id": root["message_tree_id"], "tree_state": "ready_for_export", "prompt": nest(root)}
            for root in by_parent[None]]


NINE_LABEL = "quality:4,toxicity:0,humor:0,creativity:0,helpfulness:{h},correctness:4,coherence:4,complexity:2,verbosity:{v}"


def nemo_steerlm_rows() -> list[dict]:
    """NeMo-Aligner's SteerLM SFT format, as its released SteerLM datasets ship it."""
    return [
        {"system": "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful,"
                   " detailed, and polite answers to the user's questions.", "mask": "User", "dataset": "helpsteer",
         "type": "VALUE_TO_TEXT",
         "conversations": [{"from": "User", "value": "What colour is the sky over Zorbia?", "label": None},
                           {"from": "Assistant", "value": "Green.", "label": NINE_LABEL.format(h=3, v=0)},
                           {"from": "User", "value": "Why?", "label": None},
                           {"from": "Assistant", "value": "Copper dust scatters green light.",
                            "label": NINE_LABEL.format(h=4, v=2)}]},
        {"system": "", "mask": "User", "type": "VALUE_TO_TEXT",
         "conversations": [{"from": "User", "value": "Add 17 and 25.", "label": None},
                           {"from": "Assistant", "value": "42", "label": "helpfulness:4,correctness:4,coherence:4,complexity:0,verbosity:0"}]},
    ]


def nemo_rm_rows() -> list[dict]:
    """NeMo-Aligner's regression reward-model format: SteerLM text ending at <extra_id_2>, nine labels."""
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful,"
              " detailed, and polite answers to the user's questions.")
    return [
        {"text": f"<extra_id_0>System\n{system}\n<extra_id_1>User\nAdd 17 and 25.\n<extra_id_1>Assistant\n42\n<extra_id_2>",
         "label": [-100, -100, -100, -100, 4, 4, 4, 0, 0]},
        {"text": "<extra_id_0>System\n\n<extra_id_1>User\nName a river in Quell.\n<extra_id_1>Assistant\n"
                 "<extra_id_2>quality:4,toxicity:0,humor:0,creativity:0,helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:2\n"
                 "The Ombre.\n<extra_id_1>User\nHow long is it?\n<extra_id_1>Assistant\nThe Ombre is 412 km long.\n<extra_id_2>",
         "label": [4, 0, 1, 0, 4, 3, 4, 1, 1]},
    ]


def multifaceted_rows() -> list[dict]:
    prefs = [{"dimension": "style", "subdimension": "conciseness", "preference": "brief",
              "description": "The user wants short answers."}]
    return [
        {"main_source": "inv", "original_source": "invented", "preference_set": prefs,
         "system": "You are a terse assistant for a busy expert.", "prompt": "Explain tides.",
         "output": "The moon's gravity pulls the oceans."},
        {"main_source": "inv", "original_source": "invented", "preference_set": prefs,
         "system": "You are a patient teacher for a curious child.", "prompt": "Explain tides.",
         "output": "Imagine the moon gently tugging the sea like a blanket..."},
    ]


def multifaceted_dpo_rows() -> list[dict]:
    return [{"system": "You answer like a pirate.", "prompt": "Say hello.",
             "chosen": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Ahoy, matey!"}],
             "rejected": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello."}]}]


def _pku_cats(*on: str) -> dict:
    return {c: c in on for c in CATEGORIES_PKU}


def pku_rows() -> list[dict]:
    return [
        {"prompt": "How do I pick a lock?", "response_0": "I can't help with breaking into property.",
         "response_1": "Insert a tension wrench and rake the pins.", "prompt_source": "inv",
         "response_0_source": "inv", "response_1_source": "inv", "is_response_0_safe": True,
         "is_response_1_safe": False, "response_0_harm_category": _pku_cats(),
         "response_1_harm_category": _pku_cats("Economic Crime", "Physical Harm"),
         "response_0_severity_level": 0, "response_1_severity_level": 2, "better_response_id": 1,
         "safer_response_id": 0, "response_0_sha256": "a" * 64, "response_1_sha256": "b" * 64},
        {"prompt": "Is it fine to insult my neighbour?", "response_0": "Yes, call them names.",
         "response_1": "It is better to talk calmly.", "prompt_source": "inv", "response_0_source": "inv",
         "response_1_source": "inv", "is_response_0_safe": False, "is_response_1_safe": True,
         "response_0_harm_category": _pku_cats("Insulting Behavior"), "response_1_harm_category": _pku_cats(),
         "response_0_severity_level": 1, "response_1_severity_level": 0, "better_response_id": 1,
         "safer_response_id": 1, "response_0_sha256": "c" * 64, "response_1_sha256": "d" * 64},
    ]


def beavertails_rows() -> list[dict]:
    return [
        {"prompt": "How can I hurt a cat?", "response": "Please don't; cats deserve care.",
         "category": {c: False for c in CATEGORIES_BT}, "is_safe": True},
        {"prompt": "How can I hurt a cat?", "response": "Kick it.",
         "category": {c: c in ("animal_abuse", "violence,aiding_and_abetting,incitement") for c in CATEGORIES_BT},
         "is_safe": False},
    ]


def steer_rows() -> list[dict]:
    return [
        {"id": "c1", "system": "Be brief.", "source": "mine",
         "messages": [{"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello.", "attributes": {"verbosity": 0}}]},
        {"type": "preference", "id": "p1", "axis": "helpfulness", "prompt": [{"role": "user", "content": "2+2?"}],
         "chosen": "4", "rejected": "5", "labels": {}},
    ]


def helpsteer2_preference_rows() -> list[dict]:
    """HelpSteer2's preference subset (negative strength: response_1 is better; 0: a tie)."""
    return [{"split": "train", "prompt": "Hi\n<extra_id_1>Assistant\nHello\n<extra_id_1>User\nName a fruit.",
             "response_1": "Apple.", "response_2": "No.", "preference_strength": -2,
             "preference_statement": "@Response 1 is better.", "preference_elaboration": "It answers."},
            {"split": "val", "prompt": "Add 1 and 1.", "response_1": "3", "response_2": "2", "preference_strength": 3,
             "preference_statement": "@Response 2 is better.", "preference_elaboration": "Right sum."}]


def helpsteer3_rows() -> list[dict]:
    """HelpSteer3 preference rows (negative overall_preference: response1 is better)."""
    return [{"domain": "Code", "language": "python", "context": [{"role": "user", "content": "Sort a list."}],
             "response1": "sorted(x)", "response2": "x.sort", "overall_preference": -1,
             "individual_preference": [{"score": -1, "reasoning": "Returns a copy."}]},
            {"domain": "General", "language": "english",
             "context": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                         {"role": "user", "content": "Bye?"}],
             "response1": "No.", "response2": "Bye!", "overall_preference": 2,
             "individual_preference": [{"score": 2, "reasoning": "Polite."}]}]


def steer_batch_rows() -> list[dict]:
    """``steer batch --samples 2 --grid verbosity=1`` output: two answers to one prompt, then one to a chat."""
    steering = {"attributes": {"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 1},
                "preset": None, "values": ["Be exact."], "system": None}
    settings = {"model": "runs/tiny", "template": {"kind": "steerlm", "schema": "helpsteer", "sha256": "0123abcd"},
                "sampling": {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 64, "seed": 0, "stop": []}}
    common = {"grid": {"verbosity": 1}, "steering": steering, "settings": settings, "finish_reason": "stop",
              "prompt_tokens": 12, "completion_tokens": 5}
    return [{"id": "q1", "prompt": "What is 1 plus 2?", "field": "sum", "key": 'q1|{"verbosity": 1}', **common,
             "text": "It is 3."},
            {"id": "q1", "prompt": "What is 1 plus 2?", "field": "sum", "key": 'q1|{"verbosity": 1}|1', "sample": 1,
             **common, "text": "It is 4."},
            {"id": "q2", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                      {"role": "user", "content": "Name a colour."}],
             "key": 'q2|{"verbosity": 1}', **common, "text": "Blue."}]


def png(colour: str = "red", size: int = 8) -> bytes:
    """A small PNG of one colour (the visual rows' images)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(colour: str = "red") -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png(colour)).decode("ascii")


def _note(rating: str, why: str = "ok") -> dict:
    return {"Rating": rating, "Rationale": why}


def spa_vl_rows() -> list[dict]:
    """SPA-VL's validation split (``class1/2/3`` present); images as data URLs so the file stands alone."""
    return [{"image": data_url("red"), "question": "How do I get into this house?", "chosen": "Ask the owner.",
             "rejected": "Break the window.", "image_name": "house.png", "class1": "Privacy", "class2": "Trespass",
             "class3": "Break-in"},
            {"image": data_url("blue"), "question": "What is this?", "chosen": "A blue square.", "rejected": "A cat.",
             "image_name": "sq.png", "class1": "Misinformation", "class2": "Facts", "class3": "Objects"}]


def vlfeedback_rows() -> list[dict]:
    """VLFeedback: three completions rated as strings, one rating not a number (Silkie skips it)."""
    def completion(model, response, h, v, e):
        return {"annotations": {"Helpfulness": _note(h), "Visual Faithfulness": _note(v), "Ethical Considerations": _note(e)},
                "model": model, "response": response}

    return [{"id": "vlf-1", "prompt": "Describe the image.", "models": ["a", "b", "c", "d"],
             "completions": [completion("a", "A red square.", "5", "5", "5"), completion("b", "A red circle.", "3", "2", "5"),
                             completion("c", "Red.", "3", "2", "5"), completion("d", "A dog.", "N/A", "1", "5")],
             "img_path": data_url("red")}]


def beavertails_v_rows() -> list[dict]:
    """BeaverTails-V's preference form: ids "1"/"2", safety "yes"/"no", rates -3..3."""
    return [{"question": "How can I use this?", "category": "dangerous_behavior", "image": data_url("black"),
             "image_severity": 2, "response_1": "Carefully, with gloves.", "response_2": "Throw it at people.",
             "response_1_from": "m1", "response_2_from": "m2", "more_helpful_response_id": "1", "safer_response_id": "1",
             "is_response_1_safe": "yes", "is_response_2_safe": "no", "response_1_harmless_rate": 2,
             "response_2_harmless_rate": -2, "response_1_helpful_rate": 2, "response_2_helpful_rate": -1}]


def beavertails_v_single_rows() -> list[dict]:
    return [{"question": "What is this?", "image": data_url("green"), "category": "violence", "image_severity": 0,
             "response": "A green square.", "is_response_safe": "yes"},
            {"question": "How do I hurt with this?", "image": data_url("green"), "category": "violence",
             "image_severity": 3, "response": "Hit hard.", "is_response_safe": "no"}]


def llamafactory_rows() -> list[dict]:
    """LLaMA-Factory's multimodal sharegpt (its mllm_demo layout): ``<image>`` placeholders and ``images``."""
    return [{"messages": [{"role": "user", "content": "<image>What colour is it?"},
                          {"role": "assistant", "content": "Red."},
                          {"role": "user", "content": "And this one? <image>"},
                          {"role": "assistant", "content": "Blue."}],
             "images": [data_url("red"), data_url("blue")]}]


ALL = {"helpsteer": helpsteer_rows, "helpsteer2-preference": helpsteer2_preference_rows, "helpsteer3": helpsteer3_rows, "helpsteer2": helpsteer2_rows, "oasst": oasst_rows, "oasst-tree": oasst_tree_rows,
       "nemo-steerlm": nemo_steerlm_rows, "nemo-rm": nemo_rm_rows,
       "multifaceted": multifaceted_rows, "multifaceted-dpo": multifaceted_dpo_rows,
       "pku-saferlhf": pku_rows, "beavertails": beavertails_rows, "steer": steer_rows, "steer-batch": steer_batch_rows,
       "spa-vl": spa_vl_rows, "vlfeedback": vlfeedback_rows, "beavertails-v": beavertails_v_rows,
       "beavertails-v-single": beavertails_v_single_rows, "llamafactory": llamafactory_rows}


def write(rows: list[dict], path: Path) -> Path:
    """Write rows as .jsonl/.json/.parquet/.csv, compressed by a .gz/.xz/.bz2 suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = path.suffixes
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(suffixes[-1], None)
    kind = suffixes[-2] if opener else suffixes[-1]
    if kind == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    if kind == ".csv":
        import pandas as pd

        pd.DataFrame(rows).to_csv(path, index=False, compression="infer")
        return path
    text = json.dumps(rows) if kind == ".json" else "".join(json.dumps(r) + "\n" for r in rows)
    if opener:
        with opener(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
