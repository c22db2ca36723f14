import json

import pytest

from steer.attributes import SCHEMAS
from steer.data.encode import IGNORE, encode, explain, guess_schema
from steer.templates import for_tokenizer as template_for
from steer.data.loader import load
from steer.data.records import Conversation, DataError, Message
from steer.data.stats import compute
from tests import fixtures
from tests.conftest import invoke_cli

CONVO = Conversation(id="x", system="Be kind.", messages=[
    Message("user", "Hi"), Message("assistant", "Hello.", {"verbosity": 1}),
    Message("user", "Bye"), Message("assistant", "Farewell.", {"verbosity": 0})])


class CharTokenizer:
    """One token per character: makes the label mask readable in assertions."""

    chat_template = None
    special_tokens_map: dict = {}

    def __call__(self, texts, add_special_tokens=False, return_offsets_mapping=False):
        out = {"input_ids": [[ord(c) for c in text] for text in texts]}
        if return_offsets_mapping:
            out["offset_mapping"] = [[(i, i + 1) for i in range(len(text))] for text in texts]
        return out


def test_exact_label_mask_native_format():
    t = template_for("steerlm", SCHEMAS["helpsteer"])
    enc = encode(CONVO, t, CharTokenizer())
    kept = "".join(chr(tok) if lab != IGNORE else "_" for tok, lab in zip(enc.input_ids, enc.labels))
    loss_text = "".join(chr(lab) for lab in enc.labels if lab != IGNORE)
    assert loss_text == "Hello.\n<extra_id_1>Farewell.\n<extra_id_1>"
    assert kept.endswith("verbosity:0\nFarewell.\n<extra_id_1>".replace("verbosity:0\n", "_" * len("verbosity:0\n")))


def test_exact_label_mask_real_chat_template(shared_assets):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(shared_assets / "tokenizers/llama3"))
    t = template_for("auto", SCHEMAS["helpsteer"], tok)
    assert t.kind == "chat"
    enc = encode(CONVO, t, tok)
    loss_pieces = tok.decode([lab for lab in enc.labels if lab != IGNORE])
    assert loss_pieces == "Hello.<|eot_id|>Farewell.<|eot_id|>"
    masked = tok.decode([i for i, lab in zip(enc.input_ids, enc.labels) if lab == IGNORE])
    assert "<attributes>" in masked and "Be kind." in masked and "Hi" in masked


def test_unlabelled_turns_carry_no_loss_and_overlong_policy():
    t = template_for("steerlm", SCHEMAS["helpsteer"])
    partly = Conversation(id="y", messages=[Message("user", "a"), Message("assistant", "unlabelled"),
                                            Message("user", "b"), Message("assistant", "labelled", {"verbosity": 2})])
    loss = "".join(chr(lab) for lab in encode(partly, t, CharTokenizer()).labels if lab != IGNORE)
    assert loss == "labelled\n<extra_id_1>"
    with pytest.raises(DataError, match="tokens > max_length 50"):
        encode(CONVO, t, CharTokenizer(), max_length=50, overlong="reject")
    with pytest.raises(DataError, match="no token carries loss"):
        encode(CONVO, t, CharTokenizer(), max_length=50, overlong="truncate")
    enc = encode(CONVO, t, CharTokenizer(), max_length=len(encode(CONVO, t, CharTokenizer()).input_ids) - 3)
    assert enc.truncated and enc.loss_tokens > 0


def test_explain_segments_concatenate_to_the_training_text():
    t = template_for("steerlm", SCHEMAS["helpsteer"])
    ex = explain(CONVO, t)
    assert "".join(p for p, _ in ex["segments"]) == t.training(CONVO.chat())[0]
    assert "".join(p for p, loss in ex["segments"] if loss) == "Hello.\n<extra_id_1>Farewell.\n<extra_id_1>"


def test_guess_schema():
    assert guess_schema([CONVO]).name == "helpsteer"
    assert guess_schema([Conversation("z", [Message("user", "a"), Message("assistant", "b", {"humor": 1})])]).name == "oasst"
    assert guess_schema([Conversation("z", [Message("user", "a"), Message("assistant", "b")])]) is None
    vision = Conversation("v", [Message("user", "a"), Message("assistant", "b", {"visual_faithfulness": 1, "verbosity": 2})])
    assert guess_schema([vision]).name == "vision"  # the text schemas first, then those sharing their names
    rated = Conversation("r", [Message("user", "a"), Message("assistant", "b", {"visual_faithfulness": 1, "ethics": 2})])
    assert guess_schema([rated]).name == "vlfeedback"


def test_stats_numbers(tmp_path):
    records, report = load(fixtures.write(fixtures.helpsteer_rows(), tmp_path / "hs.jsonl"))
    stats = compute(records, report)
    assert (stats["rows"], stats["examples"], stats["rejected"]) == (3, 3, {})
    assert stats["attributes"]["verbosity"] == {"count": 3, "mean": 4 / 3, "histogram": {"0": 1, "1": 1, "3": 1}}
    # verbosity rises with response length in the fixture: both correlations are positive
    assert stats["length_correlation"]["verbosity"]["spearman"] == pytest.approx(1.0)
    assert stats["length_correlation"]["coherence"] == {"pearson": None, "spearman": None}   # constant labels


def test_cli_inspect_shows_loss_tokens(tmp_path, shared_assets):
    path = fixtures.write(fixtures.helpsteer2_rows(), tmp_path / "HelpSteer2.jsonl")
    out = invoke_cli("data", "inspect", str(path), "-n", "2", "--tokenizer", str(shared_assets / "tokenizers/llama3"))
    assert out.returncode == 0, out.stderr
    assert "4 rows read, 4 examples" in out.stdout and "template chat, schema helpsteer" in out.stdout
    assert "#1 HelpSteer2:2" in out.stdout and "with loss" in out.stdout
    plain = invoke_cli("data", "inspect", str(path), "-n", "1", "--template", "steerlm")
    assert "<extra_id_2>helpfulness:4,correctness:3" in plain.stdout


def test_cli_stats_json_and_plot(tmp_path):
    path = fixtures.write(fixtures.pku_rows(), tmp_path / "pku.jsonl")
    out = invoke_cli("data", "stats", str(path), "--json", "--plot", str(tmp_path / "p.png"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("rows", "examples", "rejected", "attributes", "length_correlation"):
        assert key in data
    assert data["attributes"]["harmlessness"]["count"] == 4
    assert set(data["length_correlation"]["harmlessness"]) == {"pearson", "spearman"}
    assert data["preference"]["pairs"] == 4
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_row_is_one_line_and_skip_invalid_reports(tmp_path):
    rows = fixtures.helpsteer_rows()
    rows[1]["verbosity"] = 11
    path = fixtures.write(rows, tmp_path / "hs.jsonl")
    bad = invoke_cli("data", "stats", str(path))
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: {path}:2: column 'verbosity': 11 is outside 0-4"
    ok = invoke_cli("data", "stats", str(path), "--skip-invalid", "--rejects", str(tmp_path / "rej.jsonl"), "--json")
    data = json.loads(ok.stdout)
    assert (data["rows"], data["examples"], data["rejected"]) == (3, 2, {"out of range": 1})
    assert json.loads((tmp_path / "rej.jsonl").read_text())["row"] == 2


def test_cli_remaining_flags(tmp_path, shared_assets):
    hs = fixtures.write(fixtures.helpsteer_rows(), tmp_path / "hs.jsonl")
    tok = str(shared_assets / "models/stories260k")
    stats = json.loads(invoke_cli("data", "stats", str(hs), "--tokenizer", tok, "--json").stdout)
    assert stats["length_unit"] == "tokens" and stats["lengths"]["response_tokens"]["count"] == 3
    out = invoke_cli("data", "inspect", str(hs), "--format", "helpsteer", "--schema", "steerlm", "--tokenizer", tok,
                     "--max-length", "230", "-n", "1")
    assert out.returncode == 0, out.stderr
    assert "schema steerlm" in out.stdout and "truncated" in out.stdout
    oasst = fixtures.write(fixtures.oasst_rows(), tmp_path / "o.jsonl")
    de = invoke_cli("data", "inspect", str(oasst), "--lang", "de", "-n", "5")
    assert "Ich habe keine Uhr." in de.stdout and "Velt" not in de.stdout
    fixtures.write(fixtures.helpsteer_rows()[:2], tmp_path / "folder" / "validation.jsonl")
    fixtures.write(fixtures.helpsteer_rows(), tmp_path / "folder" / "train.jsonl")
    split = json.loads(invoke_cli("data", "stats", str(tmp_path / "folder"), "--split", "validation", "--json").stdout)
    assert split["rows"] == 2
