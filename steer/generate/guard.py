"""A guard at inference (after Safe RLHF-V's guardrail): score each answer with a cost model and, above
the threshold, regenerate under a safer steering, up to a number of rounds, then refuse.

The safer steering: for a model with the ``safety`` schema, ``harmlessness`` at its maximum; otherwise
a safety value statement added to the request's values (Janus-style). Every round's cost travels with
the answer (:class:`Guarded`), so the server's ``steer`` field and ``steer chat`` can say what happened.

With ``prompts`` (``--guard-prompts``) the prompt is screened first, as the input level of Safe RLHF-V's
multi-level guardrail: the cost model scores the conversation with an empty answer (what it has read
when the answer starts), and over the threshold the refusal is released without generating anything.
A cost model learns to score prompts only as far as its data ties harm to the prompt (a BeaverTails or
PKU-SafeRLHF cost model does: unsafe answers follow harmful prompts); the screen's own costs are reported
(``prompt_cost``) so an operator can set its threshold from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from steer.engines.base import Response
from steer.errors import UsageError
from steer.steering import Steering

SAFETY_VALUE = "Put safety first: do not help with anything that could cause harm, and say so briefly."
REFUSAL = "I can't help with that."


@dataclass
class Guarded:
    """What the guard did: the answer released, each round's cost, and whether it fell back to the refusal."""

    response: Response
    costs: list[float]
    refused: bool
    tokens: list[int] | None = None  # each round's generated tokens: what the extra rounds cost
    prompt_cost: float | None = None  # the prompt's screened cost (``--guard-prompts``)

    def to_json(self) -> dict[str, Any]:
        out = {"rounds": len(self.costs), "costs": self.costs, "tokens": self.tokens or [], "refused": self.refused}
        return out if self.prompt_cost is None else {**out, "prompt_cost": self.prompt_cost}


@dataclass
class Guard:
    """``cost(conversations) -> [cost]`` (a cost model), the threshold, the rounds of regeneration and the
    text released when every round is over the threshold."""

    cost: Callable[[Sequence[Sequence[Mapping[str, Any]]]], list[float]]
    max_cost: float
    rounds: int = 2
    refusal: str = REFUSAL
    value: str = SAFETY_VALUE
    prompts: bool = False  # screen the prompt before generating

    def safer(self, steering: Steering, schema: Any) -> Steering:
        """The steering of a regeneration: harmlessness at its maximum, or the safety value statement."""
        if schema is not None and "harmlessness" in schema.names:
            top = schema.get("harmlessness").max
            return replace(steering, attributes={**(steering.attributes or {}), "harmlessness": top})
        return replace(steering, values=[*steering.values, self.value] if self.value not in steering.values
                       else steering.values)

    def screen(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """The prompt's cost: the conversation scored with an empty answer."""
        (cost,) = self.cost([[*messages, {"role": "assistant", "content": ""}]])
        return float(cost)

    def run(self, messages: Sequence[Mapping[str, Any]], steering: Steering | None, schema: Any,
            generate: Callable[[Steering | None], Response], *, steer: bool = True, prompt_tokens: int = 0) -> Guarded:
        """Generate with ``steering``, then (``steer``) under the safer one, while the cost is over the
        threshold; without ``steer`` (a raw completion) each round samples the same prompt again. With
        ``prompts``, a prompt over the threshold is refused before anything is generated."""
        screened = self.screen(messages) if self.prompts else None
        if screened is not None and screened > self.max_cost:
            refusal = Response(self.refusal, [], "stop", prompt_tokens, 0, 0.0)
            return Guarded(refusal, [], True, [], screened)
        costs: list[float] = []
        tokens: list[int] = []
        current = steering
        for _ in range(self.rounds + 1):
            response = generate(current)
            (cost,) = self.cost([[*messages, {"role": "assistant", "content": response.text}]])
            costs.append(float(cost))
            tokens.append(response.completion_tokens)
            if cost <= self.max_cost:
                return Guarded(response, costs, False, tokens, screened)
            if steer and current is not None:
                current = self.safer(current, schema)
        return Guarded(replace(response, text=self.refusal, finish_reason="stop"), costs, True, tokens, screened)


def make(cost: str | None, max_cost: float | None, rounds: int = 2, refusal: str | None = None,
         value: str | None = None, schema: Any = None, prompts: bool = False) -> Guard | None:
    """A :class:`Guard` from command-line settings (None without ``--guard``); a model without the
    ``safety`` schema regenerates with the value statement, so it needs a template that renders values."""
    if cost is None:
        if max_cost is not None:
            raise UsageError("--max-cost needs --guard cost:PATH (a cost model from `steer train cost`)")
        if prompts:
            raise UsageError("--guard-prompts needs --guard cost:PATH (a cost model from `steer train cost`)")
        return None
    if not cost.startswith("cost:") or not cost[5:]:
        raise UsageError(f"--guard {cost}: expected cost:PATH (a cost model from `steer train cost`)")
    if rounds < 0:
        raise UsageError(f"--guard-rounds must be >= 0, got {rounds}")
    from steer.evaluate.judges import make_scorer

    scorer, _ = make_scorer(cost)
    return Guard(scorer, 0.0 if max_cost is None else max_cost, rounds, refusal or REFUSAL, value or SAFETY_VALUE,
                 prompts)
