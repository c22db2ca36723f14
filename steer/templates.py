"""Prompt rendering: SteerLM native format, chat-template steering, Janus value statements.

Every format is one Jinja chat template: a *base* (NeMo's SteerLM format, a model's own chat
template, or a Mistral-instruct fallback for Janus) wrapped by a steering *prelude* and
*postlude*. The prelude rewrites ``messages`` before the base runs (value statements into the
system message, an attribute line in front of each assistant turn); the postlude puts the
attribute line after the generation prompt. Because the result is a plain chat template, the
exported tokenizer renders exactly what steer renders, with
``apply_chat_template(messages, add_generation_prompt=True, steer_attributes=..., steer_values=...)``
under transformers, vLLM or any engine that forwards ``chat_template_kwargs``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from steer.attributes import Schema, require_schema
from steer.errors import TemplateError, UsageError

DEFAULT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# The two top-level template variables that carry steering (vLLM forwards only these).
STEER_VARIABLES = ("steer_attributes", "steer_values")
TEMPLATE_KINDS = ("steerlm", "chat", "janus")
# Where the attribute string goes in an assistant turn: (opening, closing) text.
ATTRIBUTE_LINE = {"steerlm": ("<extra_id_2>", "\n"), "chat": ("<attributes>", "</attributes>\n")}
STEERLM_STOP = "<extra_id_1>"
_MARK = "steer:template: steering prelude"

# NeMo-Aligner's SteerLM conversation format (byte-exact). A final assistant turn is followed by
# the next turn's start token, which carries loss, as NeMo does.
_STEERLM_BODY = """{%- if bos_token is defined and bos_token -%}{{- bos_token -}}{%- endif -%}
{%- set has_system = messages and messages[0]['role'] == 'system' -%}
{%- set sys_text = messages[0]['content'] if has_system else @DEFAULT_SYSTEM@ -%}
{%- set body = messages[1:] if has_system else messages -%}
{{- '<extra_id_0>System\\n' ~ sys_text ~ '\\n' -}}
{%- for m in body -%}
{%- if m['role'] == 'user' -%}{{- '<extra_id_1>User\\n' ~ m['content'] ~ '\\n' -}}
{%- elif m['role'] == 'assistant' -%}{{- '<extra_id_1>Assistant\\n' ~ m['content'] ~ '\\n' -}}
{%- else -%}{{- raise_exception('the SteerLM format has no role ' ~ m['role']) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<extra_id_1>Assistant\\n' -}}
{%- elif body and body[-1]['role'] == 'assistant' -%}{{- '<extra_id_1>' -}}
{%- endif -%}"""

# Janus trained Mistral-7B-v0.2 with "[INST] {system}\\n{instruction} [/INST]": used for models
# without a chat template of their own (the prelude merges the system text into the first turn).
_JANUS_BODY = """{%- if bos_token is defined and bos_token -%}{{- bos_token -}}{%- endif -%}
{%- for m in messages -%}
{%- if m['role'] == 'user' -%}{{- '[INST] ' ~ m['content'] ~ ' [/INST]' -}}
{%- elif m['role'] == 'assistant' -%}{{- m['content'] ~ (eos_token if eos_token is defined and eos_token else '') -}}
{%- else -%}{{- raise_exception('the Janus format has no role ' ~ m['role']) -}}
{%- endif -%}
{%- endfor -%}"""

_PRELUDE = """{#- steer:template: steering prelude (steer_attributes, steer_values); see steer/templates.py -#}
@IMAGE_LINE@
{%- set steer_flat = namespace(msgs=[], text='') -%}
{%- for m in messages -%}
{%- if m['content'] is string or m['content'] is none -%}{%- set steer_flat.msgs = steer_flat.msgs + [m] -%}
{%- else -%}
{%- set steer_flat.text = '' -%}
{%- for p in m['content'] -%}
{%- if p['type'] == 'text' -%}{%- set steer_flat.text = steer_flat.text ~ p['text'] -%}
{%- elif p['type'] in ('image', 'image_url') -%}
{%- if steer_image is none -%}{{- raise_exception('this model reads text only: a message has image parts') -}}{%- endif -%}
{%- set steer_flat.text = steer_flat.text ~ steer_image -%}
{%- endif -%}
{%- endfor -%}
{%- set steer_flat.msgs = steer_flat.msgs + [dict(m, content=steer_flat.text)] -%}
{%- endif -%}
{%- endfor -%}
{%- set messages = steer_flat.msgs -%}
{%- set steer_names = @NAMES@ -%}
{%- set steer_open = @OPEN@ -%}
{%- set steer_close = @CLOSE@ -%}
{%- set steer_merge_system = @MERGE@ -%}
{%- set steer_ranges = @RANGES@ -%}
{%- macro steer_attr_string(spec) -%}
{%- set parsed = namespace(items=[]) -%}
{%- if spec is string -%}
{%- for item in spec.replace('=', ':').split(',') if item|trim -%}{%- set kv = item.split(':') -%}
{%- if kv|length != 2 -%}{{- raise_exception('steer_attributes: cannot read ' ~ item|trim ~ ' (expected name:value)') -}}{%- endif -%}
{%- set parsed.items = parsed.items + [[kv[0]|trim, kv[1]|trim]] -%}
{%- endfor -%}
{%- set spec = dict(parsed.items) -%}
{%- elif spec is not mapping -%}{{- raise_exception('steer_attributes must be a mapping or a name:value string') -}}
{%- endif -%}
{%- for name in spec -%}
{%- if name not in steer_ranges -%}{{- raise_exception('steer_attributes: unknown attribute ' ~ name ~ ' (known: ' ~ steer_ranges|list|join(', ') ~ ')') -}}{%- endif -%}
{%- set v = spec[name]|string|trim -%}
{%- if spec[name] is boolean or not v.lstrip('-').isdigit() or not (steer_ranges[name][0] <= v|int <= steer_ranges[name][1]) -%}
{{- raise_exception('steer_attributes: ' ~ name ~ ' must be an integer in ' ~ steer_ranges[name][0] ~ '-' ~ steer_ranges[name][1] ~ ', got ' ~ v) -}}
{%- endif -%}
{%- endfor -%}
{%- for pair in steer_names -%}{{- (',' if not loop.first else '') ~ pair[0] ~ ':' ~ ((spec[pair[0]]|string|trim|int) if pair[0] in spec else pair[1]) -}}{%- endfor -%}
{%- endmacro -%}
{%- if steer_attributes is defined and steer_attributes and not steer_names -%}{{- raise_exception('steer_attributes: this model has no attribute schema; steer it with steer_values or a system message') -}}{%- endif -%}
{%- set steer_defaults = @DEFAULTS@ -%}
{%- set steer_values_text = ((steer_values if steer_values is string else steer_values | join('\\n')) if steer_values is defined and steer_values else '') -%}
{%- set steer_has_system = messages and messages[0]['role'] == 'system' -%}
{%- set steer_given = messages[0]['content'] if steer_has_system else none -%}
{%- set steer_rest = messages[1:] if steer_has_system else messages -%}
{%- set steer_sys = ((steer_given ~ '\\n\\n' ~ steer_values_text) if steer_given else steer_values_text) if steer_values_text else steer_given -%}
{%- set steer_ns = namespace(msgs=[], line='', pending=(steer_sys if steer_merge_system else none)) -%}
{%- if steer_sys is not none and not steer_merge_system -%}
{%- set steer_ns.msgs = [{'role': 'system', 'content': steer_sys}] -%}
{%- endif -%}
{%- for m in steer_rest -%}
{%- if m['role'] == 'assistant' and steer_names -%}
{%- set steer_ns.line = steer_attr_string(m['attributes']) if m['attributes'] is defined and m['attributes'] is not none else steer_defaults -%}
{%- set steer_ns.msgs = steer_ns.msgs + [dict(m, content=steer_open ~ steer_ns.line ~ steer_close ~ m['content'])] -%}
{%- elif m['role'] == 'user' and steer_ns.pending is not none -%}
{%- set steer_ns.msgs = steer_ns.msgs + [dict(m, content=steer_ns.pending ~ '\\n' ~ m['content'])] -%}
{%- set steer_ns.pending = none -%}
{%- else -%}
{%- set steer_ns.msgs = steer_ns.msgs + [m] -%}
{%- endif -%}
{%- endfor -%}
{%- set steer_cut = (add_generation_prompt is defined and add_generation_prompt and steer_names | length > 0) -%}
{%- set steer_current = (steer_attr_string(steer_attributes) if steer_attributes is defined and steer_attributes is not none else steer_defaults) if steer_cut else '' -%}
{%- set messages = steer_ns.msgs + ([{'role': 'assistant', 'content': steer_open ~ steer_current ~ steer_close ~ @CUT@}] if steer_cut else []) -%}
{%- if steer_cut -%}{%- set add_generation_prompt = false -%}{%- endif -%}
@PARTS@{%- set steer_rendered %}"""

# For a base that reads content only as a list of parts (many vision-language templates): the
# prelude's text goes back into parts, each image placeholder an image part.
_PARTS = """{%- set steer_pp = namespace(msgs=[], parts=[]) -%}
{%- for m in messages -%}
{%- set steer_pp.parts = [] -%}
{%- for piece in (m['content'].split(steer_image) if steer_image else [m['content']]) -%}
{%- if not loop.first -%}{%- set steer_pp.parts = steer_pp.parts + [{'type': 'image'}] -%}{%- endif -%}
{%- if piece -%}{%- set steer_pp.parts = steer_pp.parts + [{'type': 'text', 'text': piece}] -%}{%- endif -%}
{%- endfor -%}
{%- set steer_pp.msgs = steer_pp.msgs + [dict(m, content=steer_pp.parts)] -%}
{%- endfor -%}
{%- set messages = steer_pp.msgs -%}
"""

# With steering, the generation prompt is the template's own rendering of an assistant turn that
# holds only the attribute line, cut after it: so it is, by construction, a prefix of training text.
_POSTLUDE = """{% endset -%}
{{- steer_rendered.split(@CUT@)[0] if steer_cut else steer_rendered -}}"""
_CUT = "@@steer-generation-prompt-ends-here@@"
# The prelude's first line: the text an image part becomes (a vision-language model's placeholder,
# which its processor expands into the image's tokens; none: a text model, image parts are refused).
_IMAGE_LINE = "{%- set steer_image = @TOKEN@ -%}"


def _image_line(token: str | None) -> str:
    return _IMAGE_LINE.replace("@TOKEN@", json.dumps(token) if token else "none")


def flatten_parts(messages: Sequence[Mapping[str, Any]], image_token: str | None) -> list[dict]:
    """Messages whose content is a list of parts, as text: text parts joined, each image part as
    ``image_token`` (what the prelude of every steering template does, in Python). A text model
    (``image_token`` None) refuses image parts."""
    out = []
    for k, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, str) or content is None:
            out.append(dict(m))
            continue
        pieces = []
        for p in content:  # as steering.content_text: a part that is not a text or image part renders nothing
            if not isinstance(p, Mapping):
                continue
            if p.get("type") == "text" and isinstance(p.get("text"), str):
                pieces.append(p["text"])
            elif p.get("type") in ("image", "image_url"):
                if not image_token:
                    raise TemplateError(f"message {k} has image parts: a text model's template renders text only "
                                        "(use a vision-language model)")
                pieces.append(image_token)
        out.append({**m, "content": "".join(pieces)})
    return out


@lru_cache(maxsize=64)
def _compile(source: str, trusted: bool = False) -> Any:
    """Compile a chat template in an environment equivalent to transformers' own (sandboxed); a
    ``trusted`` template (steer wrote all of its code) skips the sandbox, whose attribute checks were
    half of data preparation's rendering time; what it renders is the same."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(Extension):
        # {% generation %} blocks (assistant masks in some templates) render their body as is.
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    kind = jinja2.Environment if trusted else ImmutableSandboxedEnvironment
    env = kind(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"chat template does not compile: {err} (line {err.lineno})") from None


def render_template(source: str, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool,
                    special_tokens: Mapping[str, str] | None = None, trusted: bool = False, **kwargs: Any) -> str:
    """Render any chat template as ``tokenizer.apply_chat_template(..., tokenize=False)`` does
    (``trusted``: see :func:`_compile`)."""
    import jinja2

    msgs = [{k: v for k, v in dict(m).items() if v is not None} for m in messages]
    variables = {**dict(special_tokens or {}), **kwargs}
    try:
        return _compile(source, trusted).render(messages=msgs, tools=None, documents=None,
                                       add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.TemplateError as err:
        raise TemplateError(f"chat template failed to render: {err}") from None


def _probe_system_support(base: str, special_tokens: Mapping[str, str] | None, parts: bool = False) -> bool:
    """True if ``base`` renders a system message (else steer merges it into the first user turn)."""
    probe = "steer-system-probe-7f3a"

    def content(text: str) -> Any:
        return [{"type": "text", "text": text}] if parts else text

    try:
        text = render_template(base, [{"role": "system", "content": content(probe)}, {"role": "user", "content": content("hi")}],
                               add_generation_prompt=True, special_tokens=special_tokens)
    except TemplateError:
        return False
    return probe in text


def _probe_parts(base: str, special_tokens: Mapping[str, str] | None) -> bool:
    """True if ``base`` renders a user turn only when its content is a list of parts (string content
    vanishes or fails): steering then hands it parts."""
    probe = "steer-parts-probe-5c1e"

    def renders(content: Any) -> bool:
        try:
            return probe in render_template(base, [{"role": "user", "content": content}], add_generation_prompt=True,
                                            special_tokens=special_tokens)
        except TemplateError:
            return False

    return not renders(probe) and renders([{"type": "text", "text": probe}])


def _wrap(base: str, *, schema: Schema | None, line: tuple[str, str], merge_system: bool,
          image_token: str | None = None, parts: bool = False) -> str:
    names = [[a.name, a.default] for a in schema.attributes] if schema else []
    ranges = {a.name: [a.min, a.max] for a in schema.attributes} if schema else {}
    defaults = ",".join(f"{name}:{value}" for name, value in names)
    prelude = (_PRELUDE.replace("@NAMES@", json.dumps(names)).replace("@RANGES@", json.dumps(ranges))
               .replace("@DEFAULTS@", json.dumps(defaults)).replace("@OPEN@", json.dumps(line[0]))
               .replace("@CLOSE@", json.dumps(line[1])).replace("@MERGE@", "true" if merge_system else "false")
               .replace("@CUT@", json.dumps(_CUT)).replace("@IMAGE_LINE@", _image_line(image_token))
               .replace("@PARTS@", _PARTS if parts else ""))
    # Templates read from .jinja files often end with a stray newline: drop it.
    return prelude + base.rstrip() + _POSTLUDE.replace("@CUT@", json.dumps(_CUT))


@dataclass(frozen=True)
class SteerTemplate:
    """A steering chat template plus what steer needs to use it (schema, stop strings)."""

    kind: str
    source: str
    schema: Schema | None
    stop: tuple[str, ...] = ()
    merge_system: bool = False
    special_tokens: Mapping[str, str] = field(default_factory=dict)
    trusted: bool = False  # steer wrote every line of its code (the SteerLM format): rendered unsandboxed
    default_system: str | None = None  # the SteerLM format's system message when none is given
    image_token: str | None = None  # what an image part renders as (a VLM's placeholder); None: text only

    def with_image_token(self, token: str | None) -> SteerTemplate:
        """The same template for a vision-language model whose processor expands ``token`` into an
        image's tokens (its prelude renders image parts as ``token``)."""
        if token == self.image_token:
            return self
        source = self.source.replace(_image_line(self.image_token), _image_line(token), 1)
        if source == self.source and token:
            raise TemplateError("this chat template has no steering prelude to place images with")
        return replace(self, source=source, image_token=token)

    def kwargs(self, attributes: Mapping[str, int] | str | None = None, values: Sequence[str] | str | None = None) -> dict:
        """The ``chat_template_kwargs`` for one request (validated against the schema)."""
        out: dict[str, Any] = {}
        if attributes is not None:
            schema = require_schema(self.schema)
            parsed = schema.parse(attributes) if isinstance(attributes, str) else schema.validate(attributes)
            out["steer_attributes"] = schema.render(parsed)
        if values:
            out["steer_values"] = [values] if isinstance(values, str) else [str(v) for v in values]
        return out

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = False,
               attributes: Mapping[str, int] | str | None = None, values: Sequence[str] | str | None = None) -> str:
        """Render a conversation; assistant messages may carry their own ``attributes`` dict.

        ``attributes`` steer the turn to be generated; earlier assistant turns without their own
        attributes are rendered with the schema defaults. Content is text or a list of parts; an image
        part renders as the model's image placeholder (:func:`flatten_parts`; refused by a text model).
        """
        return render_template(self.source, flatten_parts(messages, self.image_token), add_generation_prompt=add_generation_prompt,
                               special_tokens=self.special_tokens, trusted=self.trusted,
                               **self.kwargs(attributes, values))

    def prompt(self, messages: Sequence[Mapping[str, Any]], *, attributes: Mapping[str, int] | str | None = None,
               values: Sequence[str] | str | None = None) -> str:
        """The generation prompt for the next assistant turn, ending with its attribute line."""
        return self.render(messages, add_generation_prompt=True, attributes=attributes, values=values)

    def training(self, messages: Sequence[Mapping[str, Any]], *,
                 values: Sequence[str] | str | None = None) -> tuple[str, list[tuple[int, int]]]:
        """The training text and the character spans that carry loss (one per assistant turn).

        A span runs from the end of the generation prompt for that turn (after the role header
        and the attribute line) to the end of the turn, its end-of-turn marker included.
        """
        messages = flatten_parts(messages, self.image_token)
        if self.trusted and self.kind == "steerlm" and self.default_system is not None:
            fast = _steerlm_training(self, messages, values)
            if fast is not None:
                return fast
        full = self.render(messages, values=values)
        spans: list[tuple[int, int]] = []
        for k, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            prefix = self.render(messages[:k], add_generation_prompt=True, attributes=message.get("attributes"), values=values)
            # A turn may end differently when it is the last one (an EOS after the final turn):
            # the span ends where "conversation ends here" and the full conversation part ways.
            end = len(full) if k == len(messages) - 1 else _common_prefix(self.render(messages[: k + 1], values=values), full)
            if not (full.startswith(prefix) and end > len(prefix)):
                raise TemplateError(
                    f"template {self.kind!r} renders assistant turn {k} differently in training and generation;"
                    " it cannot be trained on this conversation as is"
                )
            spans.append((len(prefix), end))
        return full, spans

    @property
    def closing(self) -> str:
        """Text the format puts at the end of every assistant turn, before its stop string."""
        return "\n" if self.kind == "steerlm" else ""

    def finish(self, text: str, stop: Sequence[str] = (), stopped: bool = False) -> tuple[str, bool]:
        """The answer from a model's decoded continuation, for every engine alike: cut at the first
        stop string (this template's and ``stop``) and, once the turn has ended (``stopped``, or a
        stop string found), without the format's closing text. Returns ``(text, stopped)``."""
        cuts = [i for i in (text.find(s) for s in (*self.stop, *stop) if s) if i >= 0]
        if cuts:
            text, stopped = text[: min(cuts)], True
        if stopped and self.closing:
            text = text.removesuffix(self.closing)
        return text, stopped

    def spec(self) -> dict:
        """A JSON-able description saved next to trained models."""
        return {"kind": self.kind, "schema": self.schema.to_dict() if self.schema else None,
                "stop": list(self.stop), "merge_system": self.merge_system,
                **({"image_token": self.image_token} if self.image_token else {})}


def _steerlm_training(t: SteerTemplate, messages: Sequence[Mapping[str, Any]],
                      values: Sequence[str] | str | None) -> tuple[str, list[tuple[int, int]]] | None:
    """:meth:`SteerTemplate.training` for the SteerLM format in plain Python: the same text and spans
    as its template renders (tested against it), one pass instead of a render per turn. None for
    anything unusual (an unknown role, an attribute that is not a valid int): the template then
    renders, or raises its own error."""
    names = t.schema.attributes if t.schema is not None else ()
    defaults = ",".join(f"{a.name}:{a.default}" for a in names)
    open_, close = ATTRIBUTE_LINE["steerlm"]
    if not all(isinstance(m.get("content"), str) for m in messages):
        return None
    given, rest = (messages[0]["content"], messages[1:]) if messages and messages[0].get("role") == "system" else (None, messages)
    values_text = (values if isinstance(values, str) else "\n".join(map(str, values))) if values else ""
    system = ((given + "\n\n" + values_text) if given else values_text) if values_text else given
    parts = [t.special_tokens.get("bos_token") or "", "<extra_id_0>System\n",
             t.default_system if system is None else system, "\n"]
    size = sum(map(len, parts))
    spans = []
    for m in rest:
        content = m["content"]
        if m.get("role") == "user":
            piece = "<extra_id_1>User\n" + content + "\n"
        elif m.get("role") == "assistant":
            line = defaults
            if names and m.get("attributes") is not None:
                line = _attribute_string(m["attributes"], names)
                if line is None:
                    return None
            head = "<extra_id_1>Assistant\n" + (open_ + line + close if names else "")
            piece = head + content + "\n"
            # the turn's loss runs from its content through the next turn's start token
            spans.append((size + len(head), size + len(piece) + len(STEERLM_STOP)))
        else:
            return None
        parts.append(piece)
        size += len(piece)
    if rest and rest[-1].get("role") == "assistant":
        parts.append(STEERLM_STOP)
    return "".join(parts), spans


def _attribute_string(spec: Any, attributes: Sequence[Any]) -> str | None:
    """``name:int,...`` in schema order for a dict of valid ints (None for anything else)."""
    if not isinstance(spec, Mapping):
        return None
    ranges = {a.name: (a.min, a.max) for a in attributes}
    for name, value in spec.items():
        if name not in ranges or isinstance(value, bool) or not isinstance(value, int) \
                or not ranges[name][0] <= value <= ranges[name][1]:
            return None
    return ",".join(f"{a.name}:{spec.get(a.name, a.default)}" for a in attributes)


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings (binary search over C-level slice compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def build_template(kind: str, *, schema: Schema | None, base: str | None = None,
                   special_tokens: Mapping[str, str] | None = None, default_system: str = DEFAULT_SYSTEM) -> SteerTemplate:
    """Build the steering template of ``kind`` (``steerlm``, ``chat`` or ``janus``).

    ``base`` is the model's own chat template (required for ``chat``; used by ``janus`` when
    present). ``special_tokens`` are the tokenizer's (bos_token, eos_token, ...).
    """
    tokens = dict(special_tokens or {})
    if kind not in TEMPLATE_KINDS:
        raise UsageError(f"unknown template {kind!r} (known: {', '.join(TEMPLATE_KINDS)})", field="template")
    if base is not None and _MARK in base and kind != "steerlm":  # the SteerLM format ignores the base
        raise TemplateError("this chat template already carries steer's steering; build from the original template")
    if kind == "steerlm":
        body = _STEERLM_BODY.replace("@DEFAULT_SYSTEM@", json.dumps(default_system))
        # steer's own code throughout (the default system message enters as a JSON string literal)
        return SteerTemplate(kind, _wrap(body, schema=schema, line=ATTRIBUTE_LINE["steerlm"], merge_system=False),
                             schema, (STEERLM_STOP,), False, tokens, trusted=True, default_system=default_system)
    if kind == "chat" and not base:
        raise TemplateError("the model has no chat template: use the SteerLM native format (--template steerlm, or "
                            "template.kind: steerlm in a recipe)")
    body = base or _JANUS_BODY
    parts = _probe_parts(body, tokens)
    merge = not _probe_system_support(body, tokens, parts)
    stop = (tokens["eos_token"],) if tokens.get("eos_token") else ()
    return SteerTemplate(kind, _wrap(body, schema=schema, line=ATTRIBUTE_LINE["chat"], merge_system=merge, parts=parts),
                         schema, stop, merge, tokens)


def for_tokenizer(kind: str, schema: Schema | None, tokenizer: Any = None,
                  default_system: str | None = None) -> SteerTemplate:
    """The steering template of ``kind`` over a tokenizer's chat template and special tokens (``auto``:
    ``chat`` when the tokenizer has a chat template, else ``steerlm``); ``default_system`` replaces
    the SteerLM format's default system message."""
    base = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if kind == "auto":
        kind = "chat" if base else "steerlm"
    tokens = dict(getattr(tokenizer, "special_tokens_map", None) or {})
    extra = {"default_system": default_system} if default_system is not None else {}
    return build_template(kind, schema=schema, base=base, special_tokens=tokens, **extra)
