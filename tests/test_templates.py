import json

import jinja2.meta
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steer.attributes import SCHEMAS
from steer.errors import TemplateError, UsageError
from steer.templates import DEFAULT_SYSTEM, STEERLM_STOP, _compile, build_template, render_template
from tests.conftest import real_chat_templates

NINE = SCHEMAS["steerlm"]


def template_variables(source: str) -> set[str]:
    """Undeclared top-level variables of a template: what vLLM forwards from chat_template_kwargs."""
    return set(jinja2.meta.find_undeclared_variables(_compile(source).environment.parse(source)))


def nemo_text(turns: list[tuple[str, str, dict]], system: str = DEFAULT_SYSTEM) -> str:
    """NeMo-Aligner's SteerLM string for (user, assistant, attributes) turns, built by hand."""
    text = "<extra_id_0>System\n" + system + "\n"
    for user, assistant, attrs in turns:
        text += f"<extra_id_1>User\n{user}\n<extra_id_1>Assistant\n<extra_id_2>{NINE.render(attrs)}\n{assistant}\n"
    return text + "<extra_id_1>"
HELPSTEER = SCHEMAS["helpsteer"]
LABEL_A = "quality:4,toxicity:0,humor:0,creativity:0,helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:1"
LABEL_B = "quality:4,toxicity:0,humor:3,creativity:0,helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:2"
CONVO = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4.", "attributes": {"verbosity": 1}},
    {"role": "user", "content": "Tell me a joke."},
    {"role": "assistant", "content": "Why did the chicken...", "attributes": {"humor": 3}},
]
# NeMo-Aligner's string for CONVO, written out by hand from its _get_header_conversation_type_mask_role
# and _add_speaker_and_signal (system header, "<extra_id_1>Role\n", label "<extra_id_2>...\n",
# end of turn "\n", and the turn token after a final assistant turn).
GOLDEN = (
    "<extra_id_0>System\n" + DEFAULT_SYSTEM + "\n"
    "<extra_id_1>User\nWhat is 2+2?\n"
    "<extra_id_1>Assistant\n<extra_id_2>" + LABEL_A + "\n4.\n"
    "<extra_id_1>User\nTell me a joke.\n"
    "<extra_id_1>Assistant\n<extra_id_2>" + LABEL_B + "\nWhy did the chicken...\n"
    "<extra_id_1>"
)


def test_steerlm_native_is_byte_exact():
    t = build_template("steerlm", schema=NINE)
    assert t.render(CONVO) == GOLDEN
    assert DEFAULT_SYSTEM == ("A chat between a curious user and an artificial intelligence assistant. The assistant "
                              "gives helpful, detailed, and polite answers to the user's questions.")
    assert t.stop == (STEERLM_STOP,)


def test_steerlm_generation_prompt_and_custom_system():
    t = build_template("steerlm", schema=NINE)
    prompt = t.prompt([{"role": "system", "content": "Be brief."}, CONVO[0]], attributes={"verbosity": 0})
    assert prompt == ("<extra_id_0>System\nBe brief.\n<extra_id_1>User\nWhat is 2+2?\n<extra_id_1>Assistant\n"
                      "<extra_id_2>quality:4,toxicity:0,humor:0,creativity:0,helpfulness:4,correctness:4,"
                      "coherence:4,complexity:2,verbosity:0\n")
    # a string spec from a client and a mapping give the same prompt
    assert t.prompt([CONVO[0]], attributes="verbosity:0") == t.prompt([CONVO[0]], attributes={"verbosity": 0})


def test_steerlm_with_bos_token_prefixes_it():
    t = build_template("steerlm", schema=NINE, special_tokens={"bos_token": "<s>"})
    assert t.render(CONVO) == "<s>" + GOLDEN


def test_steerlm_values_go_into_the_system_message():
    t = build_template("steerlm", schema=HELPSTEER)
    text = t.prompt([CONVO[0]], values=["I am a busy expert; be terse.", "I prefer numbers."])
    assert text.startswith("<extra_id_0>System\nI am a busy expert; be terse.\nI prefer numbers.\n<extra_id_1>User\n")
    with_sys = t.prompt([{"role": "system", "content": "Base."}, CONVO[0]], values="Be terse.")
    assert with_sys.startswith("<extra_id_0>System\nBase.\n\nBe terse.\n<extra_id_1>")


def test_steerlm_without_schema_has_no_label_line():
    t = build_template("steerlm", schema=None)
    assert t.render(CONVO[:2]) == ("<extra_id_0>System\n" + DEFAULT_SYSTEM + "\n<extra_id_1>User\nWhat is 2+2?\n"
                                   "<extra_id_1>Assistant\n4.\n<extra_id_1>")
    with pytest.raises(UsageError, match="no attribute schema"):
        t.prompt(CONVO[:1], attributes={"verbosity": 1})


def test_invalid_steering_is_rejected_before_rendering():
    t = build_template("steerlm", schema=HELPSTEER)
    with pytest.raises(UsageError, match="did you mean 'verbosity'"):
        t.prompt(CONVO[:1], attributes={"verbosty": 1})
    with pytest.raises(UsageError, match="out of range"):
        t.prompt(CONVO[:1], attributes="verbosity:7")


def test_training_spans_cover_assistant_text_and_end_marker_only():
    t = build_template("steerlm", schema=NINE)
    text, spans = t.training(CONVO)
    assert text == GOLDEN == nemo_text([(CONVO[0]["content"], CONVO[1]["content"], CONVO[1]["attributes"]),
                                        (CONVO[2]["content"], CONVO[3]["content"], CONVO[3]["attributes"])])
    assert [text[a:b] for a, b in spans] == ["4.\n<extra_id_1>", "Why did the chicken...\n<extra_id_1>"]


def test_steering_variables_are_top_level_and_undeclared():
    t = build_template("steerlm", schema=NINE)
    found = template_variables(t.source)
    assert {"steer_attributes", "steer_values"} <= found
    # internal names of the prelude must not leak as undeclared variables
    assert found <= {"messages", "steer_attributes", "steer_values", "bos_token", "add_generation_prompt"}


@given(st.lists(st.tuples(st.text(min_size=1, max_size=30).filter(lambda s: "<extra_id" not in s and "\n" not in s),
                          st.text(min_size=1, max_size=30).filter(lambda s: "<extra_id" not in s and "\n" not in s),
                          st.dictionaries(st.sampled_from(NINE.names), st.integers(0, 4))),
                min_size=1, max_size=3))
@settings(max_examples=50, deadline=None)
def test_render_is_nemo_text_property(turns):
    """Any turns, any attributes: the rendering is NeMo's string, and each loss span is a reply and its end."""
    t = build_template("steerlm", schema=NINE)
    messages = []
    for user, assistant, attrs in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant, "attributes": attrs}]
    assert t.render(messages) == nemo_text(turns)
    text, spans = t.training(messages)
    assert [text[a:b] for a, b in spans] == [f"{a}\n<extra_id_1>" for _, a, _ in turns]


# ---------------------------------------------------------------- real chat templates

TEMPLATES = real_chat_templates()
CHAT = [
    {"role": "system", "content": "You are a tutor."},
    {"role": "user", "content": "Explain gravity."},
    {"role": "assistant", "content": "Mass attracts mass.", "attributes": {"verbosity": 0}},
    {"role": "user", "content": "More detail please."},
    {"role": "assistant", "content": "Gravity is the curvature of spacetime.", "attributes": {"verbosity": 4, "complexity": 4}},
]
TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


@pytest.fixture(scope="module")
def hf_tokenizer(shared_assets):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(shared_assets / "tokenizers/gpt2/tokenizer.json"), **TOKENS)
    return tok


@pytest.mark.skipif(not TEMPLATES, reason="shared chat templates not found")
@pytest.mark.parametrize("name, base", TEMPLATES, ids=[t[0] for t in TEMPLATES] or None)
def test_every_real_template_steers_identically_under_transformers(name, base, hf_tokenizer):
    t = build_template("chat", schema=HELPSTEER, base=base, special_tokens=TOKENS)
    kwargs = {"steer_attributes": "verbosity:1,complexity:3", "steer_values": ["I am a busy expert."]}
    ours = t.prompt(CHAT[:4], attributes={"verbosity": 1, "complexity": 3}, values=["I am a busy expert."])
    hf_tokenizer.chat_template = t.source
    theirs = hf_tokenizer.apply_chat_template(CHAT[:4], add_generation_prompt=True, tokenize=False, **kwargs)
    assert ours == theirs
    assert ours.endswith("<attributes>helpfulness:4,correctness:4,coherence:4,complexity:3,verbosity:1</attributes>\n")
    # value statements and the system text reach the prompt, with or without a system role
    assert "I am a busy expert." in ours and "You are a tutor." in ours
    assert {"steer_attributes", "steer_values"} <= template_variables(t.source)
    # training and inference agree: the generation prompt is an exact prefix of the training text
    text, spans = t.training(CHAT, values=["I am a busy expert."])
    last_prompt = t.prompt(CHAT[:4], attributes=CHAT[4]["attributes"], values=["I am a busy expert."])
    assert text.startswith(last_prompt)
    assert text[spans[-1][0]:].startswith("Gravity is the curvature of spacetime.")
    assert text[spans[0][0]:spans[0][1]].startswith("Mass attracts mass.")
    assert "<attributes>" not in "".join(text[a:b] for a, b in spans)


@pytest.mark.skipif(not TEMPLATES, reason="shared chat templates not found")
def test_templates_without_system_role_merge_it_into_the_first_turn(shared_assets):
    base = (shared_assets / "tokenizers/mistral-v1/chat_template.jinja").read_text()
    t = build_template("janus", schema=None, base=base, special_tokens=TOKENS)
    assert t.merge_system
    prompt = t.prompt([{"role": "user", "content": "Plan my week."}], values="I am a busy expert; be terse.")
    assert prompt == "<s>[INST] I am a busy expert; be terse.\nPlan my week. [/INST]"


def test_janus_fallback_for_models_without_a_chat_template():
    t = build_template("janus", schema=None, special_tokens=TOKENS)
    text, spans = t.training([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello."}])
    assert text == "<s>[INST] Be terse.\nHi [/INST]Hello.</s>"
    assert [text[a:b] for a, b in spans] == ["Hello.</s>"]
    assert t.stop == ("</s>",)


def test_chat_kind_needs_a_base_template_and_rejects_double_wrapping():
    with pytest.raises(TemplateError, match="--template steerlm"):
        build_template("chat", schema=HELPSTEER, base=None)
    t = build_template("steerlm", schema=HELPSTEER)
    with pytest.raises(TemplateError, match="already carries"):
        build_template("chat", schema=HELPSTEER, base=t.source)
    with pytest.raises(TemplateError, match="does not compile"):
        render_template("{% if %}", [], add_generation_prompt=True)


TOKENIZER_CASES = [("llama3", "chat"), ("mistral-v1", "chat"), ("gpt2", "steerlm"), ("stories260k", "steerlm")]


@pytest.mark.parametrize("name, kind", TOKENIZER_CASES)
def test_training_and_generation_agree_token_for_token(name, kind, shared_assets):
    from transformers import AutoTokenizer

    path = shared_assets / ("models" if name == "stories260k" else "tokenizers") / name
    tok = AutoTokenizer.from_pretrained(str(path))
    t = build_template(kind, schema=HELPSTEER, base=tok.chat_template, special_tokens=tok.special_tokens_map)
    text, spans = t.training(CHAT)
    prompt = t.prompt(CHAT[:4], attributes=CHAT[4]["attributes"])
    full_ids = tok(text, add_special_tokens=False)["input_ids"]
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    # the exported tokenizer renders the same prompt with plain transformers
    tok.chat_template = t.source
    assert tok.apply_chat_template(CHAT[:4], add_generation_prompt=True, tokenize=False,
                                   steer_attributes=json.loads(json.dumps(CHAT[4]["attributes"]))) == prompt


def test_history_turns_without_attributes_use_defaults_not_the_request():
    t = build_template("steerlm", schema=HELPSTEER)
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    prompt = t.prompt(history, attributes={"verbosity": 0})
    assert "<extra_id_2>helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:2\nb\n" in prompt
    assert prompt.endswith("<extra_id_2>helpfulness:4,correctness:4,coherence:4,complexity:2,verbosity:0\n")
    text, spans = t.training(history + [{"role": "assistant", "content": "d", "attributes": {"verbosity": 0}}])
    assert text.startswith(prompt) and len(spans) == 2


@pytest.mark.parametrize("name", [n for n, _ in TOKENIZER_CASES])
def test_backend_tokenization_equals_the_transformers_call(name, shared_assets):
    from transformers import AutoTokenizer

    from steer.tokens import tokenize

    path = shared_assets / ("models" if name == "stories260k" else "tokenizers") / name
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.model_max_length = 8  # a tokenizer-level limit must not truncate either path
    texts = [" leading space", "<extra_id_1>User\nHi  there\n\n", "naïve café 東京 🙂", "", "x" * 40,
             tok.eos_token + "after eos" if tok.eos_token else "no eos"]
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    assert tokenize(tok, texts) == [(list(i), [tuple(o) for o in off]) for i, off in zip(enc["input_ids"], enc["offset_mapping"])]


@pytest.mark.parametrize("name, kind", [("stories260k", "steerlm"), ("llama3", "chat")])
def test_the_exported_template_refuses_what_steer_refuses(name, kind, shared_assets):
    """Under plain transformers (or vLLM, which reports a template error as a 400) the steering template
    itself rejects an unknown attribute, an out-of-range or non-integer value, and attributes for a
    model without a schema; valid values render exactly steer's prompt."""
    import jinja2
    from transformers import AutoTokenizer

    path = shared_assets / ("models" if name == "stories260k" else "tokenizers") / name
    tok = AutoTokenizer.from_pretrained(str(path))
    t = build_template(kind, schema=HELPSTEER, base=tok.chat_template, special_tokens=tok.special_tokens_map)
    tok.chat_template = t.source
    msgs = [{"role": "user", "content": "Hi"}]

    def render(**kw):
        return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False, **kw)

    for bad, needle in [({"verbosty": 1}, "unknown attribute verbosty"), ({"verbosity": 9}, "integer in 0-4, got 9"),
                        ("verbosity:x", "got x"), ({"verbosity": 2.5}, "got 2.5"), ({"verbosity": True}, "got True"),
                        ("verbosity", "cannot read verbosity"), ({"verbosity": -1}, "got -1"), (7, "mapping")]:
        with pytest.raises(jinja2.TemplateError, match=needle):
            render(steer_attributes=bad)
    assert render(steer_attributes={"verbosity": 1}) == render(steer_attributes="verbosity: 1") == t.prompt(
        msgs, attributes={"verbosity": 1})
    assert render() == t.prompt(msgs)
    values_only = build_template("janus", schema=None, special_tokens=TOKENS)
    with pytest.raises(TemplateError, match="no attribute schema"):
        render_template(values_only.source, msgs, add_generation_prompt=True, steer_attributes={"verbosity": 1})


def test_steerlm_training_in_python_is_the_templates_text_and_spans():
    """The SteerLM format's training text and loss spans, computed in Python for speed, are exactly what
    its (sandboxed) template renders, for single and multi-turn conversations, with and without a
    system message, value statements, attributes, a BOS token or a schema; odd input falls back to the
    template and its error."""
    import dataclasses
    import itertools

    from steer.attributes import get_schema

    conversations = [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!", "attributes": {"verbosity": 1}}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a\n"},
         {"role": "assistant", "content": " b ", "attributes": {"helpfulness": 4, "complexity": 0}},
         {"role": "user", "content": ""}, {"role": "assistant", "content": "c"}],
        [{"role": "system", "content": ""}, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
         {"role": "assistant", "content": "z", "attributes": {"verbosity": 4}}, {"role": "user", "content": "last"}],
        [{"role": "user", "content": "only a question"}],
    ]
    for schema, bos, values in itertools.product([get_schema("helpsteer"), None], [None, "<s>"],
                                                 [None, "Be kind.", ["one", "two"]]):
        fast = build_template("steerlm", schema=schema, special_tokens={"bos_token": bos} if bos else {},
                              default_system="Sys.")
        slow = dataclasses.replace(fast, trusted=False)
        for messages in conversations:
            if schema is None:
                messages = [{k: v for k, v in m.items() if k != "attributes"} for m in messages]
            assert fast.training(messages, values=values) == slow.training(messages, values=values)
            # the unsandboxed render of steer's own template is the sandboxed one
            assert fast.prompt(messages, values=values) == slow.prompt(messages, values=values)
    t = build_template("steerlm", schema=get_schema("helpsteer"))
    bad = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "attributes": {"verbosity": 9}}]
    with pytest.raises(TemplateError, match="verbosity must be an integer in 0-4"):
        t.training(bad)
