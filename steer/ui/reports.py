"""What a command found, as tables and lines: data, training, evaluations, the quickstart."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.table import Table

from steer.ui.console import console, key_values, plain

def inspect_example(example: dict, index: int) -> None:
    """One rendered training example: text carrying loss in green, the rest dimmed (a preference
    pair: its chosen side, then its rejected side)."""
    from rich.rule import Rule

    if "sides" in example:
        strength = f", strength {example['strength']:g}" if example.get("strength") is not None else ""
        console.print(Rule(f"[bold]#{index}[/] pair {example['id']}  (axis {example['axis']}{strength})",
                           align="left", characters="="))
        for name, side in example["sides"].items():
            _inspect_one(side, f"{index}.{name}")
        return
    _inspect_one(example, str(index))


def _inspect_one(example: dict, index: str) -> None:
    from rich.rule import Rule
    from rich.text import Text

    if example["tokens"] is None:
        counts = f"{example['chars']} chars, {example['loss_chars']} with loss"
    else:
        counts = f"{example['tokens']} tokens, {example['loss_tokens']} with loss" + (
            ", truncated" if example.get("truncated") else "") + (f"; {example['note']}" if example.get("note") else "")
    console.print(Rule(f"[bold]#{index}[/] {example['id']}  ({counts})", align="left"))
    text = Text()
    per_token = example["tokens"] is not None
    for n, (piece, loss) in enumerate(example["segments"]):
        shown = piece.replace("\n", "\\n\n")
        style = "bold green" if loss else "dim"
        if per_token:
            style += " underline" if n % 2 else ""
        text.append(shown, style=style)
    console.print(text)


def inspect_legend(template_kind: str, schema: str | None, tokenizer: str | None) -> None:
    console.print(f"template [bold]{template_kind}[/], schema [bold]{schema or 'none'}[/], "
                  f"tokenizer [bold]{tokenizer or 'none (characters)'}[/]   "
                  "[bold green]green[/]: carries loss   [dim]dim[/]: masked (-100)"
                  + ("   alternate tokens underlined" if tokenizer else ""))


def inspection(shown: Any, tokenizer: str | None) -> None:
    """``steer data inspect``: the load summary, the legend, then each example."""
    load_summary(shown.report.to_json())
    inspect_legend(shown.template, shown.schema, tokenizer)
    for index, example in enumerate(shown.examples):
        inspect_example(example, index)


def load_summary(report: dict) -> None:
    """Rows read, examples produced, rejected and filtered per reason."""
    rejected = ", ".join(f"{k}: {v}" for k, v in report["rejected"].items()) or "none"
    filtered = ", ".join(f"{k}: {v}" for k, v in report["filtered"].items()) or "none"
    console.print(f"[bold]{report['source']}[/] ({report['format']}): {report['rows']} rows read, "
                  f"{report['examples']} examples, rejected {rejected}, filtered {filtered}")


def data_stats(stats: dict) -> None:
    """Tables for ``steer data stats``."""
    load_summary(stats)
    if stats["attributes"]:
        table = Table(title=f"attributes (length in {stats['length_unit']})", title_justify="left")
        for col in ("attribute", "count", "mean", "histogram", "pearson vs length", "spearman vs length"):
            table.add_column(col, justify="left" if col in ("attribute", "histogram") else "right")
        for name, info in stats["attributes"].items():
            corr = stats["length_correlation"][name]
            fmt = lambda v: "-" if v is None else f"{v:+.3f}"  # noqa: E731
            hist = " ".join(f"{k}:{v}" for k, v in info["histogram"].items())
            table.add_row(name, str(info["count"]), f"{info['mean']:.2f}", hist, fmt(corr["pearson"]), fmt(corr["spearman"]))
        console.print(table)
    lengths = Table(title="lengths", title_justify="left")
    for col in ("series", "count", "mean", "median", "p90", "max"):
        lengths.add_column(col, justify="left" if col == "series" else "right")
    for name, s in stats["lengths"].items():
        if s.get("count"):
            lengths.add_row(name, str(s["count"]), f"{s['mean']:.1f}", str(s["median"]), str(s["p90"]), str(s["max"]))
    if lengths.row_count:
        console.print(lengths)
    if "preference" in stats:
        p = stats["preference"]
        acc = "-" if p["longer_is_chosen"] is None else f"{100 * p['longer_is_chosen']:.1f}%"
        axes = ", ".join(f"{k} {v}" for k, v in p["axes"].items())
        strength = ", ".join(f"{k}: {v}" for k, v in p["strength"].items())
        console.print(f"preference pairs: {p['pairs']} ({axes}); ties dropped at load: {p['ties_dropped']}"
                      + (f"; strength {strength}" if strength else ""))
        c, r = p["chosen_length"], p["rejected_length"]
        console.print(f"mean length ({p['length_unit']}): chosen {c['mean']:.1f}, rejected {r['mean']:.1f}; "
                      f"'always prefer the longer response' agrees with the label on {acc} "
                      f"({p['equal_length']} pairs of equal length left out)")
    if stats.get("plot"):
        plain(f"plot: {stats['plot']}")


def labelled(report: Any, names: list[str], output: str) -> None:
    """The summary line of ``steer label``."""
    plain(f"{report.written} records labelled, {report.skipped} already done; {report.total} in all "
          f"({', '.join(names)}): {output}")


def pairs_derived(result: Mapping[str, Any]) -> None:
    """The summary of ``steer data pairs``: what was loaded, how answers became pairs, what was left out."""
    load_summary(result["load"])
    dropped = ", ".join(f"{k}: {v}" for k, v in result["dropped"].items()) or "none"
    longer = result["longer_is_chosen"]
    margin = result["mean_margin"]
    console.print(f"{result['answers']} answers in {result['groups']} groups -> [bold]{result['pairs']}[/] pairs "
                  f"(mean margin {_num(margin)}; the longer answer chosen in "
                  f"{'-' if longer is None else f'{100 * longer:.1f}%'}); left out: {dropped}")
    plain(f"pairs: {result['out']}")


def pair_accuracy(result: Mapping[str, Any]) -> None:
    """``steer eval pairs``: accuracy overall and per group, the "longer wins" baseline, a cost model's sign."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    what = "the safer answer costs less" if result["kind"] == "cost" else "the chosen answer scores higher"
    other = f" ({result['other_axes']} on other axes left out)" if result.get("other_axes") else ""
    if result["pairs"]:
        console.print(f"[bold]{result['data']}[/] ({result['format']}): {result['pairs']} pairs{other}; {what} in "
                      f"[bold]{pct(result['accuracy'])}[/]; 'longer wins' {pct(result['longer_wins']['accuracy'])}; "
                      f"the model sides with the longer answer in {pct(result['agrees_with_longer'])}")
    else:
        console.print(f"[bold]{result['data']}[/] ({result['format']}): {result['answers']} single rated answers "
                      f"(no pairs); mean cost {result['mean_cost']:.3f}")
    groups = [(name.removeprefix("by_"), key, row) for name in ("by_axis", "by_source", "by_category")
              for key, row in result.get(name, {}).items()]
    if groups:
        table = Table(title_justify="left")
        for col in ("group", "", "pairs", "accuracy"):
            table.add_column(col, justify="right" if col in ("pairs", "accuracy") else "left")
        for kind, key, row in groups:
            table.add_row(kind, key, str(row["pairs"]), pct(row["accuracy"]))
        console.print(table)
    sign = result.get("sign")
    if sign:
        levels = ", ".join(f"{k} {pct(v['accuracy'])} ({v['pairs']})" for k, v in sign["by_level"].items())
        console.print(f"cost sign matches the safety label on {pct(sign['accuracy'])} of {sign['pairs']} answers: {levels}")
    cats = result.get("categories")
    if cats:
        console.print(f"harm categories: {cats['flagged']} flags in {cats['answers']} (answer, category) cells; recall "
                      f"{pct(cats['recall'])}, precision {pct(cats['precision'])}, accuracy {pct(cats['accuracy'])}")
        table = Table(title_justify="left")
        for col in ("category", "flagged", "recall", "precision", "accuracy"):
            table.add_column(col, justify="left" if col == "category" else "right")
        for name, row in cats["by_category"].items():
            if row["flagged"] or row["recall"] is not None or row["precision"] is not None:
                table.add_row(name, str(row["flagged"]), pct(row["recall"]), pct(row["precision"]), pct(row["accuracy"]))
        console.print(table)
    if result.get("plot"):
        plain(f"plot: {result['plot']}")


def curves(result: Mapping[str, Any]) -> None:
    """``steer eval curves``: a row per run and metric: the first value, the end (mean of the last steps), min, max."""
    table = Table(title=f"end: the mean of the last {result['window']} logged steps", title_justify="left")
    for col in ("run", "metric", "first", "end", "min", "max", "steps"):
        table.add_column(col, justify="left" if col in ("run", "metric") else "right")
    for run, metrics in result["runs"].items():
        for name, m in metrics.items():
            table.add_row(run, name, f"{m['first']:.3f}", f"{m['last']:.3f}", f"{m['min']:.3f}", f"{m['max']:.3f}",
                          str(m["steps"]))
    console.print(table)
    if result.get("plot"):
        plain(f"plot: {result['plot']}")


def best_answer(result: Mapping[str, Any]) -> None:
    """``steer generate --best-of N``: the answer kept, then one dim line with every candidate's scores."""
    best = result["best_of"]
    plain(result["text"])
    marks = []
    for k, c in enumerate(best["candidates"]):
        cost = f", cost {_num(c['cost'])}" if "cost" in c else ""
        over = " over the limit" if c.get("within_cost") is False else ""
        marks.append(f"{'*' if k == best['chosen'] else ''}{_num(c[best['score']])}{cost}{over}")
    console.print(f"[dim]best of {len(best['candidates'])} by {best['score']}: {'; '.join(marks)}[/]")


def guard_note(guarded: Mapping[str, Any]) -> None:
    """One dim line when the guard regenerated or refused an answer (nothing when it passed at once)."""
    if guarded["refused"] and not guarded["rounds"]:
        console.print(f"[dim](guard: the prompt was refused, its cost {guarded['prompt_cost']:.2f})[/]")
    elif guarded["rounds"] > 1 or guarded["refused"]:
        costs = ", ".join(f"{c:.2f}" for c in guarded["costs"])
        console.print(f"[dim](guard: {guarded['rounds']} rounds, costs {costs}{'; refused' if guarded['refused'] else ''})[/]")


def batch_done(report: Any, output: str, errors: str) -> None:
    """The summary line of ``steer batch``."""
    bad = f" (see {errors})" if report.errors else ""
    plain(f"{report.written} rows written, {report.skipped} already done, {report.errors} bad rows{bad}; "
          f"{report.total} in all: {output}")


def prepared(result: Any) -> None:
    """Summary of ``steer data prepare`` (a :class:`steer.data.prepare.Prepared`)."""
    for source in result.reports:
        load_summary(source.to_json())
    state = "reused from cache" if result.cached else "written"
    rejected = ", ".join(f"{k}: {v}" for k, v in result.rejected.items()) or "none"
    console.print(f"{result.examples} examples, {result.tokens} tokens ({result.loss} {result.loss_unit}), "
                  f"rejected {rejected}; {state}: [bold]{result.path}[/]")


def trained(result: Any) -> None:
    """Summary after ``steer train`` (a :class:`steer.train.loop.RunResult`): loss, the per-attribute
    validation table when the task reports one, the run directory and what to run next."""
    ev = "-" if result.eval_loss is None else f"{result.eval_loss:.4f}"
    tl = "-" if result.train_loss is None else f"{result.train_loss:.4f}"
    console.print(f"trained {result.steps} steps on {result.tokens:,} tokens: loss {tl}, eval loss {ev}")
    if result.table:
        metrics_table(result.table)
    console.print(f"run directory: [bold]{result.run_dir}[/]")
    if result.next_steps:
        console.print("next: " + "   |  ".join(result.next_steps), markup=False)


def metrics_table(table: Mapping[str, Mapping[str, float]]) -> None:
    """The task's validation table: a row per attribute (APM: MAE, RMSE, Pearson) or per set of pairs (DPO)."""
    names = {"mae": "MAE", "rmse": "RMSE", "pearson": "Pearson"}
    columns = list(dict.fromkeys(k for row in table.values() for k in row))
    out = Table(title="validation")
    out.add_column("", justify="left")
    for col in columns:
        out.add_column(names.get(col, col), justify="right")
    for name, row in table.items():
        out.add_row(name, *("-" if row.get(m) is None else f"{row[m]:.3f}" for m in columns))
    console.print(out)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def steerability(summary: Mapping[str, Mapping], extra: Mapping[str, Mapping[int, str]] | None = None) -> None:
    """One small table per swept attribute (requested level, mean realised level, answers judged),
    with its Spearman correlation; ``extra`` adds a column per attribute (name -> level -> text)."""
    from rich.columns import Columns

    tables = []
    for name, result in summary.items():
        rho = result["spearman"]
        ok = "green" if rho is not None and rho >= 0.8 else "yellow"
        t = Table(title=f"[bold]{name}[/]  Spearman [{ok}]{_num(rho)}[/]", title_justify="left")
        t.add_column("requested", justify="right")
        t.add_column("realised", justify="right")
        t.add_column("n", justify="right", style="dim")
        column = (extra or {}).get(name)
        if column:
            t.add_column(column["title"], justify="right")  # type: ignore[call-overload]
        for level in result["levels"]:
            row = [str(level["requested"]), _num(level["realised"]), str(level["judged"])]
            if column:
                row.append(column["values"].get(level["requested"], "-"))  # type: ignore[union-attr]
            t.add_row(*row)
        tables.append(t)
    console.print(Columns(tables, padding=(0, 3)))


def side_effects(summary: Mapping[str, Mapping]) -> None:
    """Per swept attribute: monotonicity violations and how far the other attributes moved."""
    for name, result in summary.items():
        moved = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["side_effects"].items(), key=lambda kv: -kv[1])) or "-"
        console.print(f"{name}: {result['monotonicity_violations']} monotonicity violations; others moved: {moved}")


def length_bias(result: Mapping[str, Any]) -> None:
    """Correlations with length, the non-length reward gain of a comparison, longer-preferred accuracy."""
    unit = result["length_unit"]
    t = Table(title=f"[bold]score vs response length ({unit})[/]", title_justify="left")
    for col in ("score", "n", "pearson", "spearman"):
        t.add_column(col, justify="left" if col == "score" else "right")
    for name, c in result["correlation"].items():
        t.add_row(name, str(c["n"]), _num(c["pearson"]), _num(c["spearman"]))
    console.print(t)
    if "compare" in result:
        c = result["compare"]
        share = "-" if c["nrg_share"] is None else f"{100 * c['nrg_share']:.0f}%"
        console.print(f"vs {c['other']}: mean score gain {_num(c['gain'], 3)}, non-length gain (NRG, {c['bin_' + unit]}-{unit} "
                      f"bins) {_num(c['nrg'], 3)} = {share} of the gain; mean length {c['mean_length']['base']:.1f} -> "
                      f"{c['mean_length']['other']:.1f} {unit}; {100 * c['outputs_in_shared_bins']:.0f}% of outputs in "
                      f"bins both sets reach")
    if "longer_preferred" in result:
        p = result["longer_preferred"]
        acc = "-" if p["accuracy"] is None else f"{100 * p['accuracy']:.1f}%"
        console.print(f"preference pairs: {p['pairs']} ({p['ties']} ties); 'always prefer the longer' agrees on {acc}")
    if result.get("plot"):
        console.print(f"plot: {result['plot']}")


def samples(prompt: str, rows: Mapping[str, Mapping[int, str]], levels: tuple[int, int] = (0, 4)) -> None:
    """Side-by-side answers to one prompt at a low and a high level of each attribute."""
    t = Table(title=f"[bold]{prompt}[/]", title_justify="left", show_lines=True)
    t.add_column("attribute")
    for level in levels:
        t.add_column(f"= {level}", ratio=1)
    for name, texts in rows.items():
        t.add_row(name, *[texts.get(level, "-") for level in levels])
    console.print(t)


def quickstart(report: Mapping[str, Any], out: str, plot: str | None) -> None:
    """The quickstart's results: steerability tables, sample answers, files, and what to run next."""
    s = report["settings"]
    console.print(f"\n[bold]Steering sweep[/]: each attribute 0..4, the others at their defaults, on {s['prompts']} "
                  "held-out prompts (greedy); 'realised' is what the corpus oracles measure in the generated text.")
    rate = {"title": "right answers", "values": {int(k): f"{100 * v:.0f}%" for k, v in report["correct_answer_rate"].items()
                                                 if v is not None}}
    steerability(report["attributes"], {"correctness": rate})
    samples(report["sample_prompt"], {k: {int(lv): t for lv, t in v.items()} for k, v in report["samples"].items()})
    t = report["timings"]
    console.print(f"time: data {t['data_s']:.0f} s, training {t['train_s']:.0f} s, evaluation {t['evaluate_s']:.0f} s, "
                  f"total {t['total_s']:.0f} s")
    console.print(f"report: [bold]{out}/report.json[/]" + (f"   plot: [bold]{plot}[/]" if plot else ""))
    model, prompt = report["model"], report["sample_prompt"]
    console.print("\n[bold]Next[/]:")
    console.print(f"  steer generate {model} \"{prompt}\" --attr verbosity=0")
    console.print(f"  steer generate {model} \"{prompt}\" --attr correctness=0 --attr complexity=4")
    console.print(f"  steer chat {model}")


def vision_quickstart(report: Mapping[str, Any], out: str, plot: str | None) -> None:
    """``steer quickstart --vision``: steerability of the tiny VLM, sample answers about one image, files, next."""
    s = report["settings"]
    console.print(f"\n[bold]Steering sweep[/]: each attribute 0..4, the other at its default, on {s['prompts']} held-out "
                  "images (greedy); 'realised' is what the oracles measure in the generated text against each image's facts.")
    steerability(report["attributes"], {})
    f = report["sample_facts"]
    samples(f"{report['sample_question']}  (the image: {f['count']} {f['colour']} {f['shape']}(s) on the {f['side']})",
            {k: {int(lv): t for lv, t in v.items()} for k, v in report["samples"].items()})
    t = report["timings"]
    console.print(f"time: data {t['data_s']:.0f} s, training {t['train_s']:.0f} s, evaluation {t['evaluate_s']:.0f} s, "
                  f"total {t['total_s']:.0f} s")
    console.print(f"report: [bold]{out}/report.json[/]" + (f"   plot: [bold]{plot}[/]" if plot else ""))
    model = report["model"]
    console.print("\n[bold]Next[/]:")
    console.print(f"  steer generate {model} \"{report['sample_question']}\" --image {out}/data/images/prompt-{s['seed'] + 2}-0.png "
                  "--attr visual_faithfulness=0")
    console.print(f"  steer chat {model}   (then /image PATH)")


def real_quickstart(report: Mapping[str, Any], out: str, plots: list[str]) -> None:
    """``steer quickstart --real``: the prompting baseline and SteerLM side by side, samples, costs."""
    s = report["settings"]
    console.print(f"\n[bold]{report['model']}[/]: verbosity and complexity asked for at 0..4 on {s['prompts']} held-out "
                  "prompts (greedy); realised verbosity = characters, complexity = Flesch-Kincaid grade.")
    table = Table(title_justify="left")
    table.add_column("attribute")
    table.add_column("steered by")
    for level in range(5):
        table.add_column(f"= {level}", justify="right")
    table.add_column("Spearman", justify="right")
    for name in ("verbosity", "complexity"):
        for method, key in (("instructions (untrained)", "baseline"), ("SteerLM attributes", "steerlm")):
            row = report[key][name]
            means = {lv["requested"]: lv["realised"] for lv in row["levels"]}
            table.add_row(name, method, *[_num(means.get(level), 0 if name == "verbosity" else 1) for level in range(5)],
                          _num(row["spearman"]))
    console.print(table)
    prompt = report["samples"]["prompt"]
    for key, title in (("baseline", "prompted"), ("steerlm", "SteerLM")):
        rows = {f"{name} ({title})": {int(k): v for k, v in texts.items()} for name, texts in report["samples"][key].items()}
        samples(prompt, {k: v for k, v in rows.items() if k.startswith("verbosity")})
    t = report["timings"]
    console.print(f"time: model {t['pull_s']:.0f} s, baseline sweep {t['baseline_s']:.0f} s, training {t['train_s']:.0f} s, "
                  f"SteerLM sweep {t['steerlm_s']:.0f} s, total {t['total_s']:.0f} s")
    console.print(f"report: [bold]{out}/report.json[/]   plots: " + "  ".join(f"[bold]{p}[/]" for p in plots))
    console.print("\n[bold]Next[/]:")
    console.print(f"  steer generate {report['run']} \"{prompt}\" --attr verbosity=0")
    console.print(f"  steer generate {report['run']} \"{prompt}\" --attr verbosity=4 --attr complexity=4")
    console.print(f"  steer chat {report['run']}")


def value_matching(result: dict) -> None:
    """``steer eval values``: matched vs mismatched statements, overall and per statement."""
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    console.print(f"{result['prompts']} prompts x {result['values']} value statements, judged by {result['judge']} "
                  f"({result['scored_by']}): {result['comparisons']} comparisons")
    console.print(f"answer scores higher under its own statement: [bold]{pct(result['matched_win_rate'])}[/] "
                  f"(chance 50%); beats every other statement: {pct(result['best_match_rate'])}")
    console.print(f"mean score matched {result['mean_matched']:.3f}, mismatched {result['mean_mismatched']:.3f}")
    table = Table(title="per value statement")
    table.add_column("value statement")
    table.add_column("win rate", justify="right")
    for row in result["per_value"]:
        text = row["value"] if len(row["value"]) <= 70 else row["value"][:67] + "..."
        table.add_row(text, pct(row["win_rate"]))
    console.print(table)


def models_table(rows: Any, home: str) -> None:
    """``steer models list``: each alias, its source and whether it is pulled (and as which dtype)."""
    table = Table(title_justify="left")
    for column in ("alias", "source", "pulled", "about"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.alias, row.source, row.dtype or "[dim]no[/]", row.about)
    console.print(table)
    plain(f"pulled models live in {home} (set STEER_MODELS to move them)")


def recipes_table(infos: Any) -> None:
    """``steer recipe list``: each recipe's path, kind, purpose, model and data (and why it does not validate)."""
    table = Table(title_justify="left")
    for column in ("recipe", "kind", "purpose", "model", "data"):
        table.add_column(column, overflow="fold")
    for info in infos:
        purpose = info.purpose + (f" [red](invalid: {info.problem})[/]" if info.problem else "")
        table.add_row(info.path, info.kind, purpose, info.model, "\n".join(info.data))
    console.print(table)
    plain(f"{len(infos)} recipes; start one of your own with `steer recipe init --kind KIND --model M --data D`")


def pulled(record: Mapping[str, Any]) -> None:
    """What ``steer models pull`` left, and how to use it."""
    state = "already pulled" if record["reused"] else "pulled"
    facts = [record.get("dtype"), f"{record['parameters']:,} parameters" if record.get("parameters") else None,
             record.get("license")]
    plain(f"{record.get('alias')} {state}: {record['path']} ({', '.join(f for f in facts if f)})")
    check = record.get("check") or {}
    if check and not check.get("equal"):
        plain(f"note: in {record['dtype']} the greedy answer to {check['prompt']!r} is {check['converted']!r}; "
              f"the GGUF file's is {check['gguf']!r}")
    plain(f'try: steer generate {record["alias"]} "What is the capital of France?"')



def vector_trained(result: Mapping[str, Any]) -> None:
    """Summary after ``steer vectors train``: the contrast, the answers read, each layer's norm, how to use it."""
    console.print(f"{result['contrast']}: {result['positive']} vs {result['negative']} answers, pooled by "
                  f"{result['pool']}", markup=False)
    for layer, norm in result["norms"].items():
        scale = result["activation_norm"].get(layer)
        console.print(f"  layer {layer}: |v| = {norm:.3f}" + (f" (activations: {scale:.3f})" if scale else ""))
    console.print(f"wrote [bold]{result['out']}[/]")
    console.print(f"next: steer generate {result['model']} \"PROMPT\" --vector {result['out']}:1.0", markup=False)


def vector_info(info: Mapping[str, Any]) -> None:
    """``steer vectors show``."""
    key_values({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in info.items()})



def methods_table(by_method: Mapping[str, Mapping[str, Mapping]]) -> None:
    """Steering methods side by side, a table per attribute: per method, Spearman, the mean realised at
    each requested level, calibration error, the share of anti-steerable prompts, what else moved most
    and how much quality dropped across the sweep."""
    names = list(dict.fromkeys(name for summary in by_method.values() for name in summary))
    for name in names:
        found = {m: s[name] for m, s in by_method.items() if name in s}
        quality = next((r["quality"]["by"] for r in found.values() if r.get("quality")), None)
        table = Table(title=f"[bold]{name}[/] by method", title_justify="left")
        for col in ("method", "Spearman", "realised, levels up", "calib. err", "anti", "most moved",
                    f"{quality} drop" if quality else "quality drop"):
            table.add_column(col, justify="left" if col in ("method", "most moved") else "right", no_wrap=True)
        for method, r in found.items():
            side = max(r["side_effects"].items(), key=lambda kv: kv[1], default=None)
            anti = r.get("anti_steerable")
            table.add_row(method, _num(r["spearman"]), " ".join(_num(lv["realised"], 1) for lv in r["levels"]),
                          _num(r.get("calibration_error")), "-" if anti is None else f"{anti:.0%}",
                          f"{side[0]} {side[1]:.2f}" if side else "-", _num((r.get("quality") or {}).get("drop")))
        console.print(table)


def grid_table(grid: Mapping[str, Any]) -> None:
    """Two attributes swept together: per method, each one's Spearman and the interaction (each one's
    realised value against the other's request)."""
    a, b = grid["attributes"]
    table = Table(title=f"grid {a} x {b}", title_justify="left")
    for col in ("method", f"Spearman {a}", f"Spearman {b}", f"{a} moved by {b}", f"{b} moved by {a}"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, r in grid["methods"].items():
        table.add_row(method, _num(r["spearman"][a]), _num(r["spearman"][b]), _num(r["interaction"][f"{a}<-{b}"]),
                      _num(r["interaction"][f"{b}<-{a}"]))
    console.print(table)


__all__ = ['inspect_example', 'inspect_legend', 'inspection', 'load_summary', 'data_stats', 'labelled', 'pairs_derived', 'pair_accuracy', 'curves', 'best_answer', 'guard_note', 'batch_done', 'prepared', 'trained', 'metrics_table', 'steerability', 'side_effects', 'length_bias', 'samples', 'quickstart', 'value_matching', 'models_table', 'pulled', 'real_quickstart', 'vision_quickstart', 'vector_trained', 'vector_info', 'methods_table', 'grid_table', 'recipes_table']
