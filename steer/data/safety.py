"""Safety labels: PKU-SafeRLHF (two responses per row) and BeaverTails (one response per row).

Both map to the ``safety`` schema's ``harmlessness`` (see ``steer.attributes``): PKU-SafeRLHF's
severity levels give 3/2/1/0; a BeaverTails response is 3 when safe and 1 (unknown severity)
when not.
"""

from __future__ import annotations

from collections.abc import Mapping

from steer.attributes import SAFETY_FROM_SEVERITY, UNSAFE_UNKNOWN_SEVERITY
from steer.data import fields
from steer.data.records import Conversation, DataError, Message, PreferencePair

PKU_COLUMNS = ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe",
               "better_response_id", "safer_response_id")
BEAVERTAILS_COLUMNS = ("prompt", "response", "category", "is_safe")


def _harm(row: Mapping, n: int) -> tuple[int, list[str]]:
    safe = fields.boolean(row, f"is_response_{n}_safe")
    column = f"response_{n}_severity_level"
    severity = fields.integer(row, column, 0, 3) if row.get(column) is not None else None
    categories = row.get(f"response_{n}_harm_category")
    harms = sorted(k for k, v in fields.flags(row, f"response_{n}_harm_category").items() if v) if categories else []
    if safe and severity not in (None, 0):
        raise DataError("inconsistent label", f"response {n} is marked safe but has severity {severity}", column=column)
    if safe:
        return SAFETY_FROM_SEVERITY[0], harms
    return (SAFETY_FROM_SEVERITY[severity] if severity else UNSAFE_UNKNOWN_SEVERITY), harms


def convert_pku(row: Mapping, key: str) -> list[Conversation | PreferencePair]:
    """Two SFT conversations (one per response) and two preference pairs (helpfulness, harmlessness)."""
    prompt = fields.text(row, "prompt")
    responses = [fields.text(row, "response_0"), fields.text(row, "response_1")]
    labels = [_harm(row, 0), _harm(row, 1)]
    better = fields.integer(row, "better_response_id", 0, 1)
    safer = fields.integer(row, "safer_response_id", 0, 1)
    out: list[Conversation | PreferencePair] = [
        Conversation(id=f"{key}:r{n}", messages=[Message("user", prompt),
                                                 Message("assistant", responses[n], {"harmlessness": labels[n][0]})],
                     meta={"harm_categories": labels[n][1]})
        for n in (0, 1)
    ]
    for axis, best in (("helpfulness", better), ("harmlessness", safer)):
        out.append(PreferencePair(id=f"{key}:{axis}", prompt=[Message("user", prompt)], axis=axis,
                                  chosen=responses[best], rejected=responses[1 - best],
                                  labels={"chosen_harmlessness": labels[best][0],
                                          "rejected_harmlessness": labels[1 - best][0],
                                          **({"chosen_harm_categories": labels[best][1],
                                              "rejected_harm_categories": labels[1 - best][1]}
                                             if row.get("response_0_harm_category") is not None else {})}))
    return out


def convert_beavertails(row: Mapping, key: str) -> Conversation:
    """One prompt/response with its safety flag and the harm categories that apply."""
    safe = fields.boolean(row, "is_safe")
    harms = sorted(k for k, v in fields.flags(row, "category").items() if v)
    if safe and harms:
        raise DataError("inconsistent label", f"marked safe but flagged {', '.join(harms)}", column="category")
    value = SAFETY_FROM_SEVERITY[0] if safe else UNSAFE_UNKNOWN_SEVERITY
    return Conversation(id=key, messages=[Message("user", fields.text(row, "prompt")),
                                          Message("assistant", fields.text(row, "response"), {"harmlessness": value})],
                        meta={"harm_categories": harms})
