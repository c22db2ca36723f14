"""The ``hf`` engine: transformers on CPU or GPU, batched (left padding) and streamed.

It loads whatever :func:`steer.runs.resolve` understands: a steer run directory (base + LoRA
adapter, or full weights), an exported model, a bare PEFT adapter, or any Hugging Face model
directory or hub id (steered with ``--template``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from steer import vectors
from steer.engines.base import Prompt, Response, Sampling, StreamText, as_prompt, check_context, text_prompts
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

    def _kwargs(self, sampling: Sampling) -> dict:
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
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        return kw

    def _finish(self, new_ids: list[int], sampling: Sampling, prompt_tokens: int, seconds: float,
                first: float | None) -> Response:
        """The response for the generated ids: up to the end of sequence, then the template's finish."""
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
        return Response(text, ids, "stop" if stopped else "length", prompt_tokens, len(ids), seconds, first, ended)

    def generate(self, prompts: Sequence[Prompt | str], sampling: Sampling, slots: int | None = None) -> list[Response]:
        """Batched generation; each prompt is already rendered and steered. At most ``slots`` prompts
        decode at once (all when None), a finished one's slot going to the next."""
        import torch

        ids, pictures = self._encode(prompts)
        for row in ids:
            check_context(len(row), sampling.max_new_tokens, self.context_length)
        added = self._vectors(prompts)
        with self.lock, torch.inference_mode(), vectors.applied(self.model, added) as hooks:
            start = time.perf_counter()
            rows = self._decode(ids, sampling, slots, pictures, hooks)
            seconds = time.perf_counter() - start
        return [self._finish(new, sampling, len(row), seconds, None) for new, row in zip(rows, ids)]

    def _vectors(self, prompts: Sequence[Prompt | str]) -> dict:
        """Each prompt's steering-vector delta per layer (:func:`steer.vectors.deltas`; empty: none)."""
        return vectors.deltas(self.model, [as_prompt(p).vectors for p in prompts])

    def _decode(self, ids: list[list[int]], sampling: Sampling, slots: int | None,
                pictures: Sequence[Sequence[Any]] = (), hooks: Any = None) -> list[list[int]]:
        """New token ids per prompt: steer's decoder, which drops finished rows and refills their slots
        (:mod:`steer.engines.decode`), or ``model.generate`` (left padding, ``slots`` at a time, with
        the rows' pixel inputs) where that does not apply (a vision-language model among them).
        ``hooks`` (:class:`steer.vectors.Applied`) is told which prompts each forward pass holds."""
        from steer.engines import decode

        tok = self.tokenizer
        kwargs = self._kwargs(sampling)  # seeds the generator too
        pictures = list(pictures) or [[] for _ in ids]
        if len(ids) > 1 and self.vision is None and decode.usable(self.model):
            stop = None
            if kwargs.get("stop_strings"):
                from transformers import StopStringCriteria

                stop = StopStringCriteria(tokenizer=tok, stop_strings=kwargs["stop_strings"])
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0  # a bare tokenizer: masked out anyway
            return decode.decode(self.model, ids, pad_id=pad, max_new_tokens=sampling.max_new_tokens,
                                 eos=decode.eos_ids(self.model, tok), stop=stop, temperature=sampling.temperature,
                                 top_k=sampling.top_k, top_p=sampling.top_p, slots=slots,
                                 on_rows=None if hooks is None else (lambda rows: setattr(hooks, "rows", rows)))
        side, tok.padding_side = tok.padding_side, "left"
        out: list[list[int]] = []
        step = slots or len(ids)
        try:
            for i in range(0, len(ids), step):
                enc = tok.pad({"input_ids": ids[i:i + step]}, padding=True, return_tensors="pt").to(self.model.device)
                width = enc["input_ids"].shape[1]
                pixels = self._pixels(enc["input_ids"], pictures[i:i + step])
                if hooks is not None:
                    hooks.rows = list(range(i, min(i + step, len(ids))))
                out += [row[width:].tolist() for row in self.model.generate(**enc, **pixels, **kwargs)]
        finally:
            tok.padding_side = side  # the tokenizer is shared (an RL run saves it): leave it as found
        return out

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

        [ids], pictures = self._encode([prompt])
        added = self._vectors([prompt])
        n = len(ids)
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
                    result["out"] = self.model.generate(**enc, **self._kwargs(sampling), streamer=streamer,
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
        response = self._finish(result["out"][0][n:].tolist(), sampling, n, seconds, first)
        if rest := shown.rest(response.text):
            yield rest
        yield response
