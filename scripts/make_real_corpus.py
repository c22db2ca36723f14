"""Build the real-model SteerLM corpus once: SmolLM2-135M-Instruct answers everyday prompts under two
system messages (plain words / expert depth), sampled; each answer also gives shorter answers (its first
sentence, its first half), and every answer is labelled by measurable judges: verbosity from its length
in characters, complexity from its Flesch-Kincaid grade, each cut into five levels at the corpus's
quintiles. Writes ``steer/corpora/smollm2-style.jsonl`` (canonical steer records), ``prompts-heldout.jsonl``
``corpus.json`` (settings, level edges, timings) and ``raw-answers.jsonl`` (what the model wrote). Run: ``python scripts/make_real_corpus.py``
(about 15 minutes on 2 CPU cores; steer models pull smollm2-135m-instruct first)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import real_prompts  # noqa: E402

from steer.engines.base import Sampling  # noqa: E402
from steer.engines.load import load_engine  # noqa: E402
from steer.evaluate.judges import fkgl  # noqa: E402
from steer.outputs import write_text_atomic  # noqa: E402
from steer.steering import steering_from, steering_prompt  # noqa: E402

STYLES = {
    "simple": "You explain things in plain, simple words that a ten-year-old can follow, in short sentences.",
    "expert": "You are an expert. Answer thoroughly and in full detail, using precise technical terms.",
}
# a sentence ends at . ! ? followed by space; "1." list numbers are not sentences on their own
_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """The text cut after each sentence end; pieces of under 4 characters join the next one."""
    out: list[str] = []
    carry = ""
    for piece in _END.split(text.strip()):
        carry = f"{carry} {piece}".strip() if carry else piece
        if len(carry) >= 4:
            out.append(carry)
            carry = ""
    return out + ([carry] if carry else [])


def variants(text: str, cut: bool) -> list[str]:
    """An answer, its first half and its first sentence (a cut answer loses its unfinished sentence)."""
    units = sentences(text)
    if cut:
        units = units[:-1] if units and not re.search(r"[.!?]\s*$", units[-1]) else units
    if not units:
        return []
    joined = [" ".join(units[:k]) for k in sorted({1, math.ceil(len(units) / 2), len(units)})]
    return list(dict.fromkeys(joined))


def quintile_edges(values: list[float]) -> list[float]:
    """The four cut points that split ``values`` into five equal-count levels."""
    ordered = sorted(values)
    return [ordered[int(len(ordered) * q / 5)] for q in range(1, 5)]


def level(value: float, edges: list[float]) -> int:
    return sum(value >= e for e in edges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "steer" / "corpora"))
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="only the first N training prompts (0: all of them)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    engine = load_engine(args.model, dtype="float32")
    prompts = real_prompts.TRAIN[: args.limit or None]
    jobs = [(p, style) for p in prompts for style in STYLES]
    sampling = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=args.max_new_tokens, seed=0)
    raw_file = out / "raw-answers.jsonl"  # appended a batch at a time: a re-run carries on where it stopped
    raw = [json.loads(line) for line in raw_file.read_text(encoding="utf-8").splitlines()] if raw_file.exists() else []
    made_with = {"model": args.model, "system": None, "temperature": 0.7, "top_p": 0.9, "seed": 0,
                 "max_new_tokens": args.max_new_tokens}
    raw = [r for r in raw if r["made_with"] == {**made_with, "system": STYLES.get(r["style"])}]  # others: again
    done = {(r["prompt"], r["style"]) for r in raw}
    todo = [job for job in jobs if job not in done]
    for i in range(0, len(todo), args.batch):
        chunk = todo[i:i + args.batch]
        rendered = [steering_prompt(engine.template, [{"role": "user", "content": p}],
                                    steering_from(None, system=STYLES[s])) for p, s in chunk]
        batch_start = time.perf_counter()
        answers = engine.generate(rendered, sampling)
        took = time.perf_counter() - batch_start
        new = [{"prompt": p, "style": s, "text": a.text, "finish_reason": a.finish_reason,
                "completion_tokens": a.completion_tokens, "seconds": round(took / len(chunk), 2),
                "made_with": {**made_with, "system": STYLES[s]}}
               for (p, s), a in zip(chunk, answers)]
        with raw_file.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
        raw += new
        print(f"{len(raw)}/{len(jobs)} answers, {time.perf_counter() - start:.0f} s", flush=True)
    by_job = {(r["prompt"], r["style"]): r for r in raw}
    answers = [by_job[job] for job in jobs]
    rows = []
    for (prompt, style), response in zip(jobs, answers):
        for text in variants(response["text"], response["finish_reason"] == "length"):
            grade = fkgl(text)
            if grade is not None:
                rows.append({"prompt": prompt, "style": style, "text": text, "chars": len(text), "fkgl": round(grade, 2)})
    length_edges = quintile_edges([r["chars"] for r in rows])
    grade_edges = quintile_edges([r["fkgl"] for r in rows])
    lines = []
    for n, r in enumerate(rows):
        attrs = {"complexity": level(r["fkgl"], grade_edges), "verbosity": level(r["chars"], length_edges)}
        lines.append(json.dumps({"id": f"smollm2-style-{n}", "messages": [
            {"role": "user", "content": r["prompt"]},
            {"role": "assistant", "content": r["text"], "attributes": attrs,
             "scores": {"chars": r["chars"], "fkgl": r["fkgl"]}}], "style": r["style"]}, ensure_ascii=False))
    write_text_atomic(out / "smollm2-style.jsonl", "\n".join(lines) + "\n")
    write_text_atomic(out / "prompts-heldout.jsonl", "".join(json.dumps({"prompt": p}) + "\n" for p in real_prompts.HELD_OUT))
    meta = {"model": args.model, "styles": STYLES, "sampling": {"temperature": 0.7, "top_p": 0.9, "seed": 0,
            "max_new_tokens": args.max_new_tokens}, "prompts": len(prompts), "answers": len(answers),
            "records": len(lines), "levels": {"verbosity_chars": length_edges, "complexity_fkgl": grade_edges},
            "generated_tokens": sum(a["completion_tokens"] for a in answers),
            "generate_s": round(sum(a["seconds"] for a in answers), 1), "machine_note": "2 CPU cores, torch CPU, float32"}
    write_text_atomic(out / "corpus.json", json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
