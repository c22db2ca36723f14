"""The ``hf`` engine: transformers on CPU or GPU, batched (left padding) and streamed.

It loads whatever :func:`steer.runs.resolve` understands: a steer run directory (base + LoRA
adapter, or full weights), an exported model, a bare PEFT adapter, or any Hugging Face model
directory or hub id (steered with ``--template``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from steer import vectors
from steer.engines.base import (Prompt, Response, Sampling, StreamText, TokenLogprob, as_prompt, check_context,
                                text_prompts)
from steer.engines.decode import Step
from steer.runs import ensure_padding
from steer.templates import SteerTemplate


class HFEngine:
    """Generation with ``transformers`` ``model.generate``."""

    def __init__(self, model: Any, tokenizer: Any, template: SteerTemplate, vision: Any = None) -> None:
        self.model = model.eval()
        self.tokenizer = ensure_padding(tokenizer)
        self.vision = vision  # a vision-language model's ImageInputs (steer.vision); None: text only
        if vision is not None and template.image_token is None:
            template = template.with_image_token(vision.placeholder)
        self.template = template
        self.reads_images = vision is not None
        limit = getattr(model.config.get_text_config(), "max_position_embeddings", None)  # a VLM: its language model's
        self.context_length: int | None = int(limit) if limit else None
        self.lock = threading.Lock()  # one generate at a time per model

    @classmethod
    def load(cls, path: str, *, template: str | None = None, schema: str | None = None, dtype: str = "auto",
             device: str | None = None) -> HFEngine:
        """Load a run directory, an exported model, or any HF model (directory or hub id)."""
        import torch

        from steer.runs import load_model, load_tokenizer, model_template, resolve, torch_dtype
        from steer.vision import image_inputs

        ref = resolve(path)
        model = load_model(ref, dtype=torch_dtype(dtype))
        vision = image_inputs(ref.tokenizer, model.config)
        tokenizer = vision.processor.tokenizer if vision is not None else load_tokenizer(ref)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), tokenizer, model_template(tokenizer, ref.spec, kind=template, schema=schema), vision)

    def _encode(self, prompts: Sequence[Prompt | str]) -> tuple[list[list[int]], list[list[Any]]]:
        """Token ids of each prompt and its images (PIL): a vision-language model's image placeholders
        are expanded into the image's tokens as in training (:meth:`steer.vision.ImageInputs.expand`)."""
        if self.vision is None:
            return self.tokenizer(text_prompts(prompts, vectors=True), add_special_tokens=False)["input_ids"], [[] for _ in prompts]
        from steer.vision import with_images

        ids, pictures = [], []
        for n, p in enumerate(map(as_prompt, prompts)):
            expanded, row = with_images(self.vision, self.tokenizer(p.text, add_special_tokens=False)["input_ids"],
                                        p.images, f"prompt {n + 1}")
            ids.append(expanded)
            pictures.append(row)
        return ids, pictures

    def _pixels(self, input_ids: Any, pictures: Sequence[Sequence[Any]]) -> dict:
        """The image inputs of these rows (``input_ids [rows, seq]``, their images in row order), on the model's device."""
        if self.vision is None:
            return {}
        found = [img for row in pictures for img in row]
        return {k: v.to(self.model.device) for k, v in self.vision.inputs(input_ids.cpu(), found).items()}

    def count_tokens(self, text: str | Prompt) -> int:
        """Tokens of a rendered prompt; a :class:`Prompt` with images counts its images' tokens too."""
        if isinstance(text, Prompt):
            return len(self._encode([text])[0][0])
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _kwargs(self, sampling: Sampling, seed: int | None = None) -> dict:
        """``model.generate`` arguments for ``sampling``; seeds torch's generator (``seed``, else the sampling's)."""
        import torch

        stop = tuple(dict.fromkeys(self.template.stop + sampling.stop))
        kw: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id,
                              "do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            kw.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        if stop:
            kw.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        seed = sampling.seed if seed is None else seed
        if seed is not None:
            torch.manual_seed(seed)
        return kw

    def _finish(self, new_ids: list[int], sampling: Sampling, prompt_tokens: int, seconds: float,
                first: float | None, scores: list[Step] | None = None) -> Response:
        """The response for the generated ids: up to the end of sequence, then the template's finish;
        ``scores``: the row's steps with log-probs, for a prompt that asked."""
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        ids = list(new_ids)
        stopped = eos is not None and eos in ids
        if stopped:
            ids = ids[: ids.index(eos)]
        else:
            while ids and ids[-1] == pad:
                ids.pop()
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        raw = self.tokenizer.decode(ids, skip_special_tokens=False)
        # a stop string that is a special token ends the turn without showing in the text
        stopped = stopped or any(s in raw and s not in text for s in (*self.template.stop, *sampling.stop))
        text, stopped = self.template.finish(text, sampling.stop, stopped)
        ended = eos if eos is not None and len(ids) < len(new_ids) and new_ids[len(ids)] == eos else None
        logprobs = None if scores is None else self._logprobs(ids, scores[:len(ids)])
        return Response(text, ids, "stop" if stopped else "length", prompt_tokens, len(ids), seconds, first, ended,
                        logprobs)

    def _logprobs(self, ids: list[int], scores: list[Step]) -> list[TokenLogprob]:
        """Each generated token (``ids``) with its log-prob and its position's most likely tokens, their
        text as each would read after the answer's tokens before it (so the tokens' texts join into the
        answer as decoded, before stop strings are cut)."""
        from steer.tokens import token_bytes, token_texts

        out = []
        for k, step in enumerate(scores):
            before = ids[max(0, k - 4):k]
            top = step.top or []
            texts = token_texts(self.tokenizer, before, [step.token, *(t for t, _ in top)])

            def entry(token: int, logprob: float, text: str) -> TokenLogprob:
                return TokenLogprob(text, logprob, token_bytes(self.tokenizer, token, text), token)

            alternatives = tuple(entry(t, lp, x) for (t, lp), x in zip(top, texts[1:]))
            out.append(replace(entry(step.token, step.logprob, texts[0]), top=alternatives))
        return out

    def generate(self, prompts: Sequence[Prompt | str], sampling: Sampling, slots: int | None = None) -> list[Response]:
        """Batched generation; each prompt is already rendered and steered, and may carry its own seed and
        ask for log-probs. At most ``slots`` prompts decode at once (all when None), a finished one's
        slot going to the next."""
        import torch

        rows = [as_prompt(p) for p in prompts]
        ids, pictures = self._encode(rows)
        for row in ids:
            check_context(len(row), sampling.max_new_tokens, self.context_length)
        added = self._vectors(rows)
        with self.lock, torch.inference_mode(), vectors.applied(self.model, added) as hooks:
            start = time.perf_counter()
            news, scores = self._decode(ids, sampling, slots, pictures, hooks, rows)
            seconds = time.perf_counter() - start
        return [self._finish(new, sampling, len(row), seconds, None, score)
                for new, row, score in zip(news, ids, scores)]

    def _vectors(self, prompts: Sequence[Prompt | str]) -> dict:
        """Each prompt's steering-vector delta per layer (:func:`steer.vectors.deltas`; empty: none)."""
        return vectors.deltas(self.model, [as_prompt(p).vectors for p in prompts])

    def _steps(self, ids: list[list[int]], sampling: Sampling, slots: int | None, hooks: Any,
               rows: Sequence[Prompt], cancelled: Any = None) -> Iterator[list[Step]]:
        """:func:`steer.engines.decode.steps` over the prompts' ids, with this model's stop strings, end
        tokens and the rows' seeds and log-prob requests (``hooks`` told which prompts each pass holds)."""
        from steer.engines import decode

        tok = self.tokenizer
        kwargs = self._kwargs(sampling)  # seeds the global generator (rows without their own seed)
        stop = None
        if kwargs.get("stop_strings"):
            from transformers import StopStringCriteria

            stop = StopStringCriteria(tokenizer=tok, stop_strings=kwargs["stop_strings"])
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0  # a bare tokenizer: masked out anyway
        return decode.steps(self.model, ids, pad_id=pad, max_new_tokens=sampling.max_new_tokens,
                            eos=decode.eos_ids(self.model, tok), stop=stop, temperature=sampling.temperature,
                            top_k=sampling.top_k, top_p=sampling.top_p, slots=slots,
                            on_rows=None if hooks is None else (lambda rows: setattr(hooks, "rows", rows)),
                            seeds=[p.seed for p in rows], logprobs=[p.logprobs for p in rows], cancelled=cancelled)

    def _decoder(self) -> bool:
        """Whether steer's decoder runs this model (a text model whose generation config it reproduces)."""
        from steer.engines import decode

        return self.vision is None and decode.usable(self.model)

    def _decode(self, ids: list[list[int]], sampling: Sampling, slots: int | None,
                pictures: Sequence[Sequence[Any]], hooks: Any,
                rows: Sequence[Prompt]) -> tuple[list[list[int]], list[list[Step] | None]]:
        """New token ids per prompt and, for a prompt that asks (``rows[i].logprobs``), its steps with
        log-probs: steer's decoder, which drops finished rows and refills their slots
        (:mod:`steer.engines.decode`), or ``model.generate`` (left padding, ``slots`` at a time, with
        the rows' pixel inputs) for a lone plain prompt and where the decoder does not apply (a
        vision-language model among them). ``hooks`` (:class:`steer.vectors.Applied`) is told which
        prompts each forward pass holds."""
        own = any(p.seed is not None or p.logprobs is not None for p in rows)
        if (len(ids) > 1 or own) and self._decoder():
            news: list[list[int]] = [[] for _ in ids]
            scores: list[list[Step] | None] = [[] if p.logprobs is not None else None for p in rows]
            for step in self._steps(ids, sampling, slots, hooks, rows):
                for s in step:
                    news[s.row].append(s.token)
                    if scores[s.row] is not None:
                        scores[s.row].append(s)
            return news, scores
        return self._generate(ids, sampling, slots, list(pictures) or [[] for _ in ids], hooks, rows)

    def _generate(self, ids: list[list[int]], sampling: Sampling, slots: int | None, pictures: list[list[Any]],
                  hooks: Any, rows: list[Prompt]) -> tuple[list[list[int]], list[list[Step] | None]]:
        """``model.generate`` over left-padded chunks of ``slots`` prompts; a prompt with its own seed
        runs alone (one generator per call), a prompt asking for log-probs gets them from the raw logits."""
        import torch

        tok = self.tokenizer
        step = 1 if any(p.seed is not None for p in rows) else (slots or len(ids))
        side, tok.padding_side = tok.padding_side, "left"
        news: list[list[int]] = []
        scores: list[list[Step] | None] = []
        base = self._kwargs(sampling)  # seeds the generator once: rows without their own seed follow on
        try:
            for i in range(0, len(ids), step):
                chunk = rows[i:i + step]
                if step == 1 and chunk[0].seed is not None:
                    torch.manual_seed(chunk[0].seed)
                k = max((p.logprobs for p in chunk if p.logprobs is not None), default=None)
                kwargs = base if k is None else {**base, "output_logits": True, "return_dict_in_generate": True}
                enc = tok.pad({"input_ids": ids[i:i + step]}, padding=True, return_tensors="pt").to(self.model.device)
                width = enc["input_ids"].shape[1]
                pixels = self._pixels(enc["input_ids"], pictures[i:i + step])
                if hooks is not None:
                    hooks.rows = list(range(i, min(i + step, len(ids))))
                out = self.model.generate(**enc, **pixels, **kwargs)
                sequences = out.sequences if k is not None else out
                news += [row[width:].tolist() for row in sequences]
                scores += [None if p.logprobs is None else _scored(out.logits, j, news[i + j], p.logprobs)
                           for j, p in enumerate(chunk)]
        finally:
            tok.padding_side = side  # the tokenizer is shared (an RL run saves it): leave it as found
        return news, scores

    def stream(self, prompt: Prompt | str, sampling: Sampling,
               cancel: threading.Event | None = None) -> Iterator[str | Response]:
        """Yield decoded text as it arrives, then the :class:`Response` (stop strings never shown).

        Setting ``cancel`` stops generation after the current token (Ctrl-C in ``steer chat``).
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancel = cancel or threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        prompt = as_prompt(prompt)
        [ids], pictures = self._encode([prompt])
        added = self._vectors([prompt])
        n = len(ids)
        kwargs = self._kwargs(sampling, prompt.seed)
        if prompt.logprobs is not None:
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        check_context(n, sampling.max_new_tokens, self.context_length)
        row = torch.tensor([ids], device=self.model.device)
        enc = {"input_ids": row, "attention_mask": torch.ones_like(row), **self._pixels(row, pictures)}
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode(), vectors.applied(self.model, added) as hooks:
                    if hooks is not None:
                        hooks.rows = [0]
                    result["out"] = self.model.generate(**enc, **kwargs, streamer=streamer,
                                                        stopping_criteria=StoppingCriteriaList([Cancelled()]))
            except BaseException as err:  # surfaced in the caller's thread
                result["error"] = err
                streamer.end()

        shown = StreamText(self.template, sampling)
        with self.lock:
            start = time.perf_counter()
            first = None
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            text = ""
            try:
                for piece in streamer:
                    if first is None and piece:
                        first = time.perf_counter() - start
                    text += piece
                    if safe := shown.push(text):
                        yield safe
            except BaseException:  # Ctrl-C or the consumer went away: stop the model, then pass it on
                cancel.set()
                thread.join()
                raise
            thread.join()
            seconds = time.perf_counter() - start
        if "error" in result:
            raise result["error"]
        out = result["out"]
        new = (out if prompt.logprobs is None else out.sequences)[0][n:].tolist()
        scores = None if prompt.logprobs is None else _scored(out.logits, 0, new, prompt.logprobs)
        response = self._finish(new, sampling, n, seconds, first, scores)
        if rest := shown.rest(response.text):
            yield rest
        yield response

    def stream_rows(self, prompts: Sequence[Prompt | str], sampling: Sampling,
                    cancel: Sequence[threading.Event | None] | None = None) -> Iterator[tuple[int, str | Response]]:
        """Several prompts decoded as rows of one batch, streamed: ``(index, text)`` as a row's text
        becomes safe to show, then ``(index, Response)`` when the row ends. ``cancel``: an event per
        prompt; once set, its row ends after the current token. Where steer's decoder does not apply (a
        vision-language model, a generation config it cannot reproduce) the rows are generated whole,
        each yielded in one piece."""
        import torch

        rows = [as_prompt(p) for p in prompts]
        if not self._decoder():
            for i, response in enumerate(self.generate(rows, sampling)):
                yield from ((i, response.text), (i, response)) if response.text else ((i, response),)
            return
        ids, _ = self._encode(rows)
        for row in ids:
            check_context(len(row), sampling.max_new_tokens, self.context_length)
        events = list(cancel or [None] * len(rows))
        streams = [_RowStream(self, sampling, row, p.logprobs is not None) for row, p in zip(ids, rows)]
        with self.lock, torch.inference_mode(), vectors.applied(self.model, self._vectors(rows)) as hooks:
            for step in self._steps(ids, sampling, None, hooks, rows, lambda i: bool(events[i] and events[i].is_set())):
                for s in step:
                    yield from ((s.row, piece) for piece in streams[s.row].add(s))


class _RowStream:
    """One row of :meth:`HFEngine.stream_rows`: its tokens so far, the text shown, its log-prob steps."""

    def __init__(self, engine: HFEngine, sampling: Sampling, prompt: list[int], logprobs: bool) -> None:
        self.engine, self.sampling, self.prompt = engine, sampling, prompt
        self.shown = StreamText(engine.template, sampling)
        self.new: list[int] = []
        self.scores: list[Step] | None = [] if logprobs else None
        self.start, self.first = time.perf_counter(), None

    def add(self, step: Step) -> list[str | Response]:
        """The pieces ``step``'s token makes safe to show; the row's :class:`Response` last when it ends."""
        self.new.append(step.token)
        if self.scores is not None:
            self.scores.append(step)
        if self.first is None:
            self.first = time.perf_counter() - self.start
        # a trailing U+FFFD is a character whose bytes are not all decoded yet
        text = self.engine.tokenizer.decode(self.new, skip_special_tokens=True).rstrip("\ufffd")
        out: list[str | Response] = [piece] if (piece := self.shown.push(text)) else []
        if step.done:
            response = self.engine._finish(self.new, self.sampling, len(self.prompt), time.perf_counter() - self.start,
                                           self.first, self.scores)
            out += [rest] if (rest := self.shown.rest(response.text)) else []
            out.append(response)
        return out


def _scored(logits: Sequence[Any], row: int, new: list[int], k: int) -> list[Step]:
    """The steps of one row of ``model.generate(output_logits=True)``: each new token's log-prob and
    the k most likely, from the log-softmax of its raw logits (``logits``: one ``[rows, V]`` per step)."""
    import torch

    out = []
    for token, step in zip(new, logits):
        logp = torch.log_softmax(step[row].float(), dim=-1)
        top = logp.topk(k) if k else None
        pairs = list(zip(top.indices.tolist(), top.values.tolist())) if top is not None else []
        out.append(Step(row, token, False, float(logp[token]), pairs))
    return out
