"""Image + text datasets in their upstream schemas; each question becomes a user turn whose content is
``[image part, text part]`` (:mod:`steer.images`: images relative to the data file, bytes from a
``datasets`` Image column, checked at load).

- **SPA-VL** (``sqrti/SPA-VL``): ``image, question, chosen, rejected`` (+ ``image_name``; the validation
  split's ``class1/2/3``: harm domain, category, subcategory) -> a ``harmlessness`` pair (the chosen
  answer is the safer one), the classes in ``meta``.
- **VLFeedback** (``MMInstruction/VLFeedback``, Silkie): ``id, prompt, models, completions, img_path``,
  each completion ``{annotations: {Helpfulness, Visual Faithfulness, Ethical Considerations}:
  {Rating: "1".."5", Rationale}, model, response}`` -> one conversation per completion rated on the
  ``vlfeedback`` schema (1-5 -> 0-4), and Silkie's DPO pairs: every two completions, scored by the mean
  of the three ratings, ties dropped (axis ``overall``). A completion with a rating that is not a number
  is left out and counted, as Silkie's code skips it.
- **BeaverTails-V** preference form (``saferlhf-v/BeaverTails-V``): ``question, category, image,
  image_severity, response_1, response_2, more_helpful_response_id, safer_response_id`` ("1"/"2": ids
  start at 1), ``is_response_N_safe`` ("yes"/"no"), ``response_N_harmless_rate`` (-3..3, >= 0 exactly
  when safe), ``response_N_helpful_rate`` -> two conversations on the ``safety`` schema (harmlessness 3
  when safe, else 3 + the harmless rate: -1 minor -> 2 ... -3 severe -> 0) and a helpfulness and a
  harmlessness pair (with each side's harmlessness, so a cost model trains on them).
- **BeaverTails-V** single-response form (``PKU-Alignment/BeaverTails-V``): ``question, image, category,
  image_severity, response, is_response_safe`` -> one conversation (an unsafe answer: harmlessness 1,
  severity unknown; its category in ``meta.harm_categories``).
- **LLaMA-Factory's multimodal sharegpt**: ``messages`` (``{role, content}`` with ``<image>``
  placeholders) and ``images`` (paths, in placeholder order) -> a conversation.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steer.attributes import SAFETY_FROM_SEVERITY, UNSAFE_UNKNOWN_SEVERITY
from steer import images
from steer.data import fields
from steer.data.preference import TIE
from steer.data.records import Conversation, DataError, Message, PreferencePair

SPA_VL_COLUMNS = ("image", "question", "chosen", "rejected")
VLFEEDBACK_COLUMNS = ("id", "prompt", "models", "completions")
BEAVERTAILS_V_COLUMNS = ("question", "image", "response_1", "response_2", "safer_response_id")
BEAVERTAILS_V_SINGLE_COLUMNS = ("question", "image", "response", "is_response_safe")
LLAMAFACTORY_COLUMNS = ("messages", "images")
VLFEEDBACK_ASPECTS = {"Helpfulness": "helpfulness", "Visual Faithfulness": "visual_faithfulness",
                      "Ethical Considerations": "ethics"}
UNRATED = "filtered: completions with a rating that is not a number (Silkie skips them)"


def question(row: Mapping, image_column: str, text_column: str, base: Path | None) -> Message:
    """The user turn: the row's image, then its question."""
    ref = images.reference(fields.get(row, image_column), base, image_column)
    return Message("user", [images.part(ref), images.text_part(fields.text(row, text_column))])


def convert_spa_vl(row: Mapping, key: str, base: Path | None = None) -> PreferencePair:
    meta = {k: row[k] for k in ("class1", "class2", "class3", "image_name") if row.get(k) is not None}
    return PreferencePair(id=key, prompt=[question(row, "image", "question", base)], chosen=fields.text(row, "chosen"),
                          rejected=fields.text(row, "rejected"), axis="harmlessness", source="spa-vl", meta=meta)


def _ratings(completion: Mapping, where: str) -> dict[str, int] | None:
    """A completion's three ratings on the vlfeedback schema (0-4), or None when one is not a number."""
    notes = completion.get("annotations")
    if not isinstance(notes, Mapping):
        raise DataError("wrong type", "annotations must be an object", column=f"{where}.annotations")
    out = {}
    for aspect, name in VLFEEDBACK_ASPECTS.items():
        note = notes.get(aspect)
        if not isinstance(note, Mapping):
            raise DataError("missing column", f"no {aspect!r} annotation", column=f"{where}.annotations")
        rating = fields.as_integer(note.get("Rating"))
        if rating is None:
            return None
        if not 1 <= rating <= 5:
            raise DataError("out of range", f"{aspect} rating {rating} is outside 1-5", column=f"{where}.annotations")
        out[name] = rating - 1
    return out


def convert_vlfeedback(row: Mapping, key: str, base: Path | None = None) -> list[Any]:
    """One conversation per rated completion, Silkie's pairs, and a counted filter per unrated one."""
    user = question(row, "img_path", "prompt", base)
    rated: list[tuple[str, dict[str, int], str]] = []
    out: list[Any] = []
    for n, completion in enumerate(fields.mapping_list(row, "completions")):
        where = f"completions[{n}]"
        response = completion.get("response")
        if not isinstance(response, str) or not response.strip():
            raise DataError("missing column", "no response text", column=f"{where}.response")
        ratings = _ratings(completion, where)
        if ratings is None:
            out.append(UNRATED)
            continue
        model = str(completion.get("model") or n)
        rated.append((model, ratings, response))
        out.append(Conversation(id=f"{key}:{model}", messages=[user, Message("assistant", response, ratings)],
                                source="vlfeedback", meta={"model": model}))
    for (ma, ra, ta), (mb, rb, tb) in itertools.combinations(rated, 2):
        sa, sb = sum(ra.values()) / 3, sum(rb.values()) / 3
        if sa == sb or ta == tb:
            out.append(TIE)  # counted, as HelpSteer2's ties are
            continue
        chosen, rejected = (ta, tb) if sa > sb else (tb, ta)
        out.append(PreferencePair(id=f"{key}:{ma}>{mb}" if sa > sb else f"{key}:{mb}>{ma}", prompt=[user],
                                  chosen=chosen, rejected=rejected, axis="overall", strength=abs(sa - sb),
                                  source="vlfeedback"))
    return out


def _one_or_two(row: Mapping, column: str) -> int:
    """BeaverTails-V's response ids: "1" or "2" (ids start at 1), as text or a number."""
    return fields.integer(row, column, 1, 2)


def _harmlessness(row: Mapping, n: int) -> int:
    safe = fields.boolean(row, f"is_response_{n}_safe")
    column = f"response_{n}_harmless_rate"
    if row.get(column) is None:
        return SAFETY_FROM_SEVERITY[0] if safe else UNSAFE_UNKNOWN_SEVERITY
    rate = fields.integer(row, column, -3, 3)
    if safe != (rate >= 0):
        raise DataError("inconsistent label", f"response {n} is marked {'safe' if safe else 'unsafe'} but its "
                        f"harmless rate is {rate}", column=column)
    return SAFETY_FROM_SEVERITY[0] if safe else SAFETY_FROM_SEVERITY[0] + rate


def convert_beavertails_v(row: Mapping, key: str, base: Path | None = None) -> list[Conversation | PreferencePair]:
    """Two rated conversations and the helpfulness and harmlessness pairs of a preference row."""
    user = question(row, "image", "question", base)
    responses = {n: fields.text(row, f"response_{n}") for n in (1, 2)}
    harmless = {n: _harmlessness(row, n) for n in (1, 2)}
    meta = {k: row[k] for k in ("category", "image_severity") if row.get(k) is not None}
    out: list[Conversation | PreferencePair] = [
        Conversation(id=f"{key}:r{n}", messages=[user, Message("assistant", responses[n], {"harmlessness": harmless[n]})],
                     source="beavertails-v", meta={**meta, "harm_categories": [] if harmless[n] == SAFETY_FROM_SEVERITY[0]
                                                   else [str(row.get("category", "unsafe"))]})
        for n in (1, 2)]
    for axis, column in (("helpfulness", "more_helpful_response_id"), ("harmlessness", "safer_response_id")):
        if row.get(column) is None:
            continue
        best = _one_or_two(row, column)
        other = 3 - best
        out.append(PreferencePair(id=f"{key}:{axis}", prompt=[user], chosen=responses[best], rejected=responses[other],
                                  axis=axis, source="beavertails-v", meta=dict(meta),
                                  labels={"chosen_harmlessness": harmless[best], "rejected_harmlessness": harmless[other]}))
    return out


def convert_beavertails_v_single(row: Mapping, key: str, base: Path | None = None) -> Conversation:
    safe = fields.boolean(row, "is_response_safe")
    value = SAFETY_FROM_SEVERITY[0] if safe else UNSAFE_UNKNOWN_SEVERITY
    meta = {k: row[k] for k in ("category", "image_severity") if row.get(k) is not None}
    return Conversation(id=key, messages=[question(row, "image", "question", base),
                                          Message("assistant", fields.text(row, "response"), {"harmlessness": value})],
                        source="beavertails-v", meta={**meta, "harm_categories": [] if safe else [str(row.get("category", "unsafe"))]})


def convert_llamafactory(row: Mapping, key: str, base: Path | None = None) -> Conversation:
    """LLaMA-Factory's multimodal sharegpt row: ``<image>`` placeholders take the ``images`` in order."""
    paths = fields.get(row, "images")
    if not isinstance(paths, list):
        raise DataError("wrong type", "images must be a list", column="images")
    refs = [images.reference(p, base, f"images[{k}]") for k, p in enumerate(paths)]
    system, messages = None, []
    for n, item in enumerate(fields.mapping_list(row, "messages")):
        role, content = item.get("role"), item.get("content")
        where = f"messages[{n}]"
        if not isinstance(content, str):
            raise DataError("wrong type", "expected text content", column=f"{where}.content")
        if role == "system" and n == 0:
            system = content or None
            continue
        if role not in ("user", "assistant"):
            raise DataError("wrong type", f"role must be user or assistant, got {role!r}", column=f"{where}.role")
        parts = images.with_placeholders(content, refs, column=f"{where}.content") if "<image>" in content else content
        messages.append(Message(role, parts))
    if refs:
        raise DataError("image count", f"{len(refs)} images have no <image> placeholder", column="images")
    return Conversation(id=key, messages=messages, system=system, source="llamafactory")
