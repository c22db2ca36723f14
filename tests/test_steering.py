"""One way user input becomes steering: the CLI, the Python API, a batch row, a chat command and a
server request all go through ``steer.steering.steering_from`` and agree."""

from __future__ import annotations

import json

import pytest

from steer.attributes import NO_SCHEMA, get_schema
from steer.engines.base import Prompt, Sampling, StreamText, check_context, text_prompts
from steer.errors import UsageError
from steer.steering import Steering, parse_attributes, steering_from, steering_prompt
from steer.templates import build_template

HELPSTEER = get_schema("helpsteer")


class FakeEngine:
    """An engine's template and nothing else: what steering needs."""

    def __init__(self, schema=HELPSTEER):
        self.template = build_template("steerlm" if schema else "janus", schema=schema)


def test_attribute_input_in_every_form_gives_the_same_values():
    want = {"complexity": 4, "verbosity": 0}
    for given in ({"verbosity": 0, "complexity": 4}, "verbosity:0,complexity=4", ["verbosity=0", "complexity:4"]):
        assert parse_attributes(given, HELPSTEER) == want
    assert parse_attributes(None, None) == parse_attributes("", None) == parse_attributes([], None) == {}
    with pytest.raises(UsageError, match="must be an object") as err:
        parse_attributes(7, HELPSTEER, field="steer.attributes")
    assert err.value.field == "steer.attributes"
    with pytest.raises(UsageError, match="did you mean 'verbosity'") as err:
        parse_attributes({"verbosty": 1}, HELPSTEER, field="steer_attributes")
    assert err.value.field == "steer_attributes"  # a server names the request parameter at fault


def test_rules_over_a_base():
    base = steering_from(HELPSTEER, attributes={"verbosity": 1}, preset="expert", values=["Be terse."], system="S.")
    over = steering_from(HELPSTEER, attributes="complexity:0", base=base)
    assert over == Steering({"verbosity": 1, "complexity": 0}, "expert", ["Be terse."], "S.")  # attributes merge
    assert steering_from(HELPSTEER, values=["Other."], system="T.", preset="concise", base=base) == Steering(
        {"verbosity": 1}, "concise", ["Other."], "T.")  # the rest replace
    assert over.resolved(HELPSTEER) == {"helpfulness": 4, "correctness": 4, "coherence": 4, "complexity": 0, "verbosity": 1}
    for bad, needle in (({"preset": "nope"}, "unknown preset"), ({"values": [1]}, "list of strings"),
                        ({"system": 3}, "system must be a string"), ({"attributes": {"verbosity": 9}}, "out of range")):
        with pytest.raises(UsageError, match=needle):
            steering_from(HELPSTEER, **bad)


def test_a_model_without_a_schema_takes_values_and_a_system_message_only():
    assert steering_from(None, values="Be terse.", system="S.") == Steering({}, None, ["Be terse."], "S.")
    for bad in ({"attributes": "verbosity:1"}, {"preset": "concise"}):
        with pytest.raises(UsageError, match=NO_SCHEMA):
            steering_from(None, **bad)
    with pytest.raises(UsageError, match=NO_SCHEMA):
        Steering({"verbosity": 1}).resolved(None)


def test_cli_api_batch_chat_and_server_agree(tmp_path):
    """The same request five ways: one Steering, one rendered prompt."""
    from steer.generate.api import request
    from steer.generate.batch import Job, iter_jobs
    from steer.generate.chat import ChatSession
    from steer.serve.app import request_steering

    engine = FakeEngine()
    messages = [{"role": "user", "content": "Hi"}]
    cli = steering_from(HELPSTEER, attributes=["verbosity=0", "complexity:4"], preset="expert", values=["Be terse."])
    api = request(engine, "Hi", attributes={"verbosity": 0, "complexity": 4}, preset="expert", values="Be terse.").steering
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"id": 1, "prompt": "Hi", "attributes": {"complexity": 4}, "values": ["Be terse."]}) + "\n")
    (job,) = iter_jobs(rows, HELPSTEER, {}, steering_from(HELPSTEER, attributes="verbosity:0", preset="expert"))
    assert isinstance(job, Job)
    chat = ChatSession(engine, steering_from(HELPSTEER, preset="expert"), Sampling())
    for line in ("/set verbosity 0", "/set complexity 4", "/value Be terse."):
        chat.handle(line)
    server = request_steering({"chat_template_kwargs": {"steer_attributes": "verbosity:0", "steer_values": "Be terse."},
                               "steer": {"attributes": {"complexity": 4}, "preset": "expert"}}, HELPSTEER)
    assert cli == api == job.steering == chat.steering == server
    prompts = {steering_prompt(engine.template, messages, s) for s in (cli, api, job.steering, chat.steering, server)}
    assert len(prompts) == 1


def test_prompts_carry_image_parts_and_text_engines_refuse_them():
    engine = FakeEngine()
    image = {"type": "image", "image": "cat.png"}
    prompt = steering_prompt(engine.template, [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}],
                             Steering())
    assert "What is it?" in prompt.text and prompt.images == ("cat.png",)  # the image each part holds
    assert prompt.text == steering_prompt(engine.template, [{"role": "user", "content": "What is it?"}], Steering()).text
    with pytest.raises(UsageError, match="text only"):
        text_prompts([prompt])
    assert text_prompts(["plain", Prompt("p")]) == ["plain", "p"]


def test_one_finish_for_every_engine_and_streaming_shows_only_what_stays():
    t = build_template("steerlm", schema=HELPSTEER)
    assert t.finish("Paris.\n<extra_id_1>User") == ("Paris.", True)  # the format's closing newline goes
    assert t.finish("Paris.\n") == ("Paris.\n", False)  # not ended: nothing is removed
    assert t.finish("Paris.\n", stopped=True) == ("Paris.", True)  # ended by the end-of-sequence token
    assert t.finish("Paris. END more", ("END",)) == ("Paris. ", True)
    chat = build_template("janus", schema=None, special_tokens={"eos_token": "</s>"})
    assert chat.finish("Hi\n</s>") == ("Hi\n", True)  # other formats keep their text as written
    raw = "Paris is big.\n<extra_id_1>User\nmore"
    stream = StreamText(t, Sampling())
    shown = "".join(stream.push(raw[:n]) for n in range(1, len(raw) + 1))
    final, _ = t.finish(raw)
    assert shown + stream.rest(final) == final == "Paris is big."


def test_one_context_check():
    check_context(10, 5, 16)
    check_context(10, 5, None)
    with pytest.raises(UsageError, match="the prompt is 16 tokens") as err:
        check_context(16, 1, 16)
    assert err.value.field == "messages"
    with pytest.raises(UsageError, match=r"\+ max_new_tokens \(7\) exceeds the context of 16") as err:
        check_context(10, 7, 16)
    assert err.value.field == "max_tokens"


def test_the_server_refuses_image_parts_for_a_text_model_as_a_400():
    from steer.serve.app import APIError, Server

    class Text(FakeEngine):
        context_length, reads_images = 64, False

        def count_tokens(self, text):
            return len(text.split())

    server = Server(Text(), "m")
    try:
        body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                                          {"type": "image_url", "image_url": {"url": "x"}}]}]}
        with pytest.raises(APIError) as err:
            server.prepare(body, chat=True)
        assert err.value.status == 400 and err.value.param == "messages" and "text only" in err.value.message
        prompt, sampling, stream, _ = server.prepare({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is it?"}]}], "max_tokens": 4}, chat=True)
        assert "What is it?" in prompt.text and sampling.max_new_tokens == 4 and stream is False
        with pytest.raises(APIError) as err:
            server.prepare({"messages": [{"role": "user", "content": "word " * 70}]}, chat=True)
        assert err.value.param == "messages" and "context is 64" in err.value.message
    finally:
        server.batcher.close()


def test_batch_rows_override_the_defaults_and_an_explicit_null_clears_them(tmp_path):
    from steer.generate.batch import BadRow, Job, iter_jobs

    rows = [{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "b", "system": None, "preset": None},
            {"id": 3, "prompt": "c", "system": "Own.", "values": [], "attributes": "verbosity:4"},
            {"id": 4, "messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"}]}]}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    defaults = steering_from(HELPSTEER, attributes="verbosity:1", preset="expert", values=["V."], system="Default.")
    jobs = list(iter_jobs(path, HELPSTEER, {}, defaults))
    assert [j.steering for j in jobs[:3]] == [
        defaults, Steering({"verbosity": 1}, None, ["V."], None),
        Steering({"verbosity": 4}, "expert", [], "Own.")]
    assert isinstance(jobs[3], BadRow) and "reads text only" in jobs[3].reason and jobs[3].line == 4
    from tests import fixtures

    (tmp_path / "x.png").write_bytes(fixtures.png("red"))  # an image path is taken beside the input file
    (image_job,) = [j for j in iter_jobs(path, HELPSTEER, {}, defaults, reads_images=True) if isinstance(j, Job)][3:]
    assert image_job.row["id"] == 4
    assert image_job.messages[0]["content"][0]["image"] == str(tmp_path / "x.png")
