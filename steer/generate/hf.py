"""The ``hf`` engine: transformers on CPU or GPU, batched (left padding) and streamed.

It loads a steer run directory (base + LoRA adapter, or full weights), an exported model, or any
Hugging Face model directory or hub id (steered with ``--template``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from steer.errors import UsageError
from steer.generate.engine import Response, Sampling, model_template
from steer.templates import SteerTemplate
from steer.train.export import find_run_file


class HFEngine:
    """Generation with ``transformers`` ``model.generate``."""

    def __init__(self, model: Any, tokenizer: Any, template: SteerTemplate) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        limit = getattr(model.config, "max_position_embeddings", None)
        self.context_length: int | None = int(limit) if limit else None
        self.lock = threading.Lock()  # one generate at a time per model

    @classmethod
    def load(cls, path: str, *, template: str | None = None, schema: str | None = None, dtype: str = "auto",
             device: str | None = None) -> HFEngine:
        """Load a run directory, an exported model, or any HF model (directory or hub id)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from steer.train.export import load_trained
        from steer.train.model import torch_dtype

        folder = Path(path)
        spec = find_run_file(folder) if folder.is_dir() else None
        tdtype = torch_dtype(dtype)
        if spec is not None:
            model, _ = load_trained(folder, dtype=tdtype)
            tok_dir = folder if (folder / "tokenizer_config.json").is_file() else folder.parent
        else:
            if not folder.is_dir() and (folder.is_absolute() or path.startswith(".") or folder.exists()):
                raise UsageError(f"model not found: {path}")
            try:
                model = AutoModelForCausalLM.from_pretrained(path, dtype=tdtype)
            except OSError as err:
                raise UsageError(f"cannot load model {path!r}: {str(err).strip().splitlines()[0]}") from None
            tok_dir = folder if folder.is_dir() else path
            adapter = folder / "adapter_config.json"
            if adapter.is_file() and not (folder / "tokenizer_config.json").is_file():
                import json

                tok_dir = json.loads(adapter.read_text())["base_model_name_or_path"]  # a bare PEFT adapter
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot load the tokenizer of {path!r}: {str(err).strip().splitlines()[0]}") from None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), tokenizer, model_template(tokenizer, spec, kind=template, schema=schema))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def check_length(self, lengths: Sequence[int], sampling: Sampling) -> None:
        """Refuse prompts (token counts) that, with ``max_new_tokens``, would not fit the context."""
        if self.context_length is None:
            return
        for n in lengths:
            if n >= self.context_length:
                raise UsageError(f"the prompt is {n} tokens; this model's context is {self.context_length}")
            if n + sampling.max_new_tokens > self.context_length:
                raise UsageError(f"prompt ({n} tokens) + max_new_tokens ({sampling.max_new_tokens}) exceeds the "
                                 f"context of {self.context_length}; lower --max-new-tokens")

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
        for s in tuple(self.template.stop) + tuple(sampling.stop):
            cut = text.find(s)
            if cut >= 0:
                text, stopped = text[:cut], True
            elif s in raw:  # a stop string that is a special token (not shown in text)
                stopped = True
        if stopped and self.template.kind == "steerlm":
            text = text.removesuffix("\n")  # the turn's closing newline belongs to the format
        return Response(text, ids, "stop" if stopped else "length", prompt_tokens, len(ids), seconds, first)

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[Response]:
        """Batched generation (left padding); each prompt is already rendered and steered."""
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"
        enc = tok(list(prompts), add_special_tokens=False, return_tensors="pt", padding=True)
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        self.check_length(lengths, sampling)
        enc = enc.to(self.model.device)
        with self.lock, torch.inference_mode():
            start = time.perf_counter()
            out = self.model.generate(**enc, **self._kwargs(sampling))
            seconds = time.perf_counter() - start
        width = enc["input_ids"].shape[1]
        return [self._finish(row[width:].tolist(), sampling, n, seconds, None) for row, n in zip(out, lengths)]

    def stream(self, prompt: str, sampling: Sampling, cancel: threading.Event | None = None) -> Iterator[str | Response]:
        """Yield decoded text as it arrives, then the :class:`Response` (stop strings never shown).

        Setting ``cancel`` stops generation after the current token (Ctrl-C in ``steer chat``).
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancel = cancel or threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        enc = self.tokenizer([prompt], add_special_tokens=False, return_tensors="pt")
        n = int(enc["input_ids"].shape[1])
        self.check_length([n], sampling)
        enc = enc.to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    result["out"] = self.model.generate(**enc, **self._kwargs(sampling), streamer=streamer,
                                                        stopping_criteria=StoppingCriteriaList([Cancelled()]))
            except BaseException as err:  # surfaced in the caller's thread
                result["error"] = err
                streamer.end()

        stops = tuple(self.template.stop) + tuple(sampling.stop)
        hold = max((len(s) for s in stops), default=0)
        with self.lock:
            start = time.perf_counter()
            first = None
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            shown, text = 0, ""
            try:
                for piece in streamer:
                    if first is None and piece:
                        first = time.perf_counter() - start
                    text += piece
                    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
                    # Hold back a tail that could be the start of a stop string.
                    safe = cut if cut >= 0 else max(shown, len(text) - hold)
                    if safe > shown:
                        yield text[shown:safe]
                        shown = safe
            except BaseException:  # Ctrl-C or the consumer went away: stop the model, then pass it on
                cancel.set()
                thread.join()
                raise
            thread.join()
            seconds = time.perf_counter() - start
        if "error" in result:
            raise result["error"]
        response = self._finish(result["out"][0][n:].tolist(), sampling, n, seconds, first)
        if len(response.text) > shown:
            yield response.text[shown:]
        yield response
