"""The ``vllm`` engine: ``vllm.LLM`` with a ``LoRARequest`` for adapters; steer renders every prompt.

vLLM is optional and imported only when this engine is used. Prompts come from the same rendering
path as the ``hf`` engine (:func:`steer.steering.steering_prompt`), the model argument resolves the
same way (:func:`steer.runs.resolve`: the same weights, adapter and tokenizer), and the answer is
post-processed by the same template (:meth:`steer.templates.SteerTemplate.finish`), so a model answers
alike on both engines. Streaming drives ``LLM.llm_engine`` request by request and aborts on cancel.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from steer.engines.base import (Prompt, Response, Sampling, StreamText, TokenLogprob, as_prompt, check_context,
                                text_prompts)
from steer.errors import UsageError
from steer.templates import SteerTemplate

INSTALL = "vLLM is not installed: pip install 'steer[vllm]' (Linux with a CUDA GPU), or use --engine hf"


def _vllm() -> Any:
    """The vllm module, or the one-line install hint."""
    try:
        import vllm
    except ImportError:
        raise UsageError(INSTALL) from None
    return vllm


def sampling_params(sampling: Sampling, template: SteerTemplate, prompt: Prompt | None = None) -> dict:
    """``vllm.SamplingParams`` keyword arguments for steer's sampling settings and a prompt's own seed
    and log-probs (``logprobs=k``: vLLM returns the sampled token's and the k most likely; its V1
    default, ``logprobs_mode="raw_logprobs"``, is the log-softmax of the raw logits, as the hf engine's)."""
    stop = list(dict.fromkeys(template.stop + sampling.stop))
    seed = sampling.seed if prompt is None or prompt.seed is None else prompt.seed
    out = {"temperature": sampling.temperature, "top_p": sampling.top_p,
           "top_k": sampling.top_k if sampling.top_k > 0 else -1, "max_tokens": sampling.max_new_tokens,
           "seed": seed, "stop": stop or None, "skip_special_tokens": True}
    if prompt is not None and prompt.logprobs is not None:
        out["logprobs"] = prompt.logprobs
    return out


def token_logprobs(token_ids: Sequence[int], positions: Sequence[Any], k: int) -> list[TokenLogprob]:
    """vLLM's ``CompletionOutput.logprobs`` (per generated token a dict ``token id -> Logprob(logprob,
    rank, decoded_token)`` holding the sampled token and the k most likely) as steer's entries."""
    def entry(token: int, lp: Any) -> TokenLogprob:
        text = lp.decoded_token or ""
        return TokenLogprob(text, float(lp.logprob), tuple(text.encode("utf-8")), int(token))

    out = []
    for token, position in zip(token_ids, positions):
        ranked = sorted(((t, lp) for t, lp in position.items() if lp.rank is not None and lp.rank <= k),
                        key=lambda pair: pair[1].rank)
        top = tuple(entry(t, lp) for t, lp in ranked[:k])
        out.append(replace(entry(token, position[token]), top=top))
    return out


class VLLMEngine:
    """Generation with ``vllm.LLM`` (offline batch inference)."""

    reads_images = False

    def __init__(self, llm: Any, tokenizer: Any, template: SteerTemplate, lora: Any = None, vllm: Any = None) -> None:
        self.llm, self.tokenizer, self.template, self.lora = llm, tokenizer, template, lora
        self.vllm = vllm if vllm is not None else _vllm()  # the vllm module (a stand-in in tests)
        self.context_length = llm.llm_engine.model_config.max_model_len
        self.lock = threading.Lock()  # one generate or stream at a time: both step the same engine

    @classmethod
    def load(cls, path: str, *, template: str | None = None, schema: str | None = None, dtype: str = "auto") -> VLLMEngine:
        vllm = _vllm()
        from vllm.lora.request import LoRARequest

        from steer.runs import load_tokenizer, model_template, resolve

        ref = resolve(path)
        tokenizer = load_tokenizer(ref)
        steering = model_template(tokenizer, ref.spec, kind=template, schema=schema)
        llm = vllm.LLM(model=ref.weights, tokenizer=ref.tokenizer, dtype=dtype, enable_lora=ref.adapter is not None)
        lora = LoRARequest("steer", 1, ref.adapter) if ref.adapter else None
        return cls(llm, tokenizer, steering, lora, vllm)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _texts(self, prompts: Sequence[Prompt | str], sampling: Sampling) -> list[str]:
        texts = text_prompts(prompts)
        for text in texts:
            check_context(self.count_tokens(text), sampling.max_new_tokens, self.context_length)
        return texts

    def _response(self, out: Any, sampling: Sampling, seconds: float, first: float | None = None,
                  logprobs: int | None = None) -> Response:
        """A vLLM ``RequestOutput`` as a :class:`Response`, finished by the template as the hf engine does
        (``logprobs``: the k the prompt asked for; its entries from the output's)."""
        c = out.outputs[0]
        text, stopped = self.template.finish(c.text, sampling.stop, c.finish_reason == "stop")
        scores = (token_logprobs(c.token_ids, c.logprobs, logprobs)
                  if logprobs is not None and getattr(c, "logprobs", None) is not None else None)
        return Response(text, list(c.token_ids), "stop" if stopped else "length", len(out.prompt_token_ids),
                        len(c.token_ids), seconds, first, logprobs=scores)

    def generate(self, prompts: Sequence[Prompt | str], sampling: Sampling, slots: int | None = None) -> list[Response]:
        # slots: vLLM's scheduler batches and refills on its own (max_num_seqs)
        rows = [as_prompt(p) for p in prompts]
        texts = self._texts(rows, sampling)
        # a seeded vLLM request is deterministic per request: one seed for all would give every copy of a
        # prompt (steer batch --samples) the same answer, so prompt k of the call is seeded seed + k (a
        # prompt's own seed wins)
        params = [self.vllm.SamplingParams(**sampling_params(
            sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + k), self.template, p))
            for k, p in enumerate(rows)]
        with self.lock:  # LLM.generate steps the same engine a stream steps
            start = time.perf_counter()
            outs = self.llm.generate([{"prompt": p} for p in texts], params, lora_request=self.lora, use_tqdm=False)
            seconds = time.perf_counter() - start
        return [self._response(out, sampling, seconds, logprobs=p.logprobs) for out, p in zip(outs, rows)]

    def stream(self, prompt: Prompt | str, sampling: Sampling, cancel: threading.Event | None = None) -> Iterator[str | Response]:
        """Yield text as vLLM decodes it, then the :class:`Response`; ``cancel`` aborts the request."""
        prompt = as_prompt(prompt)
        params = self.vllm.SamplingParams(**sampling_params(sampling, self.template, prompt))
        (text,) = self._texts([prompt], sampling)
        engine, rid = self.llm.llm_engine, f"steer-{uuid.uuid4().hex}"
        shown = StreamText(self.template, sampling)
        with self.lock:
            start, first, last = time.perf_counter(), None, None
            engine.add_request(rid, {"prompt": text}, params, lora_request=self.lora)
            try:
                while last is None or not last.finished:
                    if cancel is not None and cancel.is_set():
                        engine.abort_request([rid])
                        break
                    for out in engine.step():
                        if out.request_id != rid:
                            continue
                        last = out
                        first = first if first is not None or not out.outputs[0].text else time.perf_counter() - start
                        if safe := shown.push(out.outputs[0].text):
                            yield safe
            except BaseException:  # the consumer went away: free the engine, then pass it on
                engine.abort_request([rid])
                raise
        seconds = time.perf_counter() - start
        response = (self._response(last, sampling, seconds, first, prompt.logprobs)
                    if last is not None  # else cancelled at once
                    else Response("", [], "length", self.count_tokens(text), 0, seconds))
        if rest := shown.rest(response.text):
            yield rest
        yield response
