"""Online constrained RL (``steer train rl``): the Lagrangian, the advantage estimators and the PPO
clip against hand-computed values; exact resume; the constrained run on the synthetic world."""

from __future__ import annotations

import json
import math

import pytest
import torch

from steer.train import rl_loss
from tests.conftest import REPO, invoke_cli, run_cli

T = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


def test_dual_ascent_by_hand_rises_over_the_threshold_falls_under_and_stays_non_negative():
    assert rl_loss.dual_ascent(0.0, 3.0, 1.0, 0.5) == 1.0  # 0 + 0.5 * (3 - 1)
    assert rl_loss.dual_ascent(1.0, 0.0, 1.0, 0.5) == 0.5  # 1 + 0.5 * (0 - 1)
    assert rl_loss.dual_ascent(0.2, 0.0, 1.0, 0.5) == 0.0  # projected onto lambda >= 0
    assert rl_loss.dual_ascent(1.0, 9.0, 1.0, 0.5, upper=2.0) == 2.0  # capped


def test_group_advantages_by_hand():
    scores = T(1.0, 3.0, 2.0, 2.0)  # two groups of two
    assert rl_loss.group_advantages(scores, 2).tolist() == pytest.approx([-1.0, 1.0, 0.0, 0.0], abs=1e-5)
    assert rl_loss.group_advantages(scores, 2, scale=False).tolist() == pytest.approx([-1.0, 1.0, 0.0, 0.0])
    three = rl_loss.group_advantages(T(0.0, 0.0, 3.0), 3)
    std = math.sqrt(((0 - 1) ** 2 * 2 + (3 - 1) ** 2) / 3)
    assert three.tolist() == pytest.approx([-1 / std, -1 / std, 2 / std], abs=1e-5)


def test_lagrangian_advantage_by_hand():
    assert rl_loss.combine(T(1.0, -1.0), T(1.0, 0.0), 3.0).tolist() == pytest.approx([(1 - 3) / 4, -1 / 4])
    assert rl_loss.combine(T(1.0), None, 3.0).tolist() == [1.0]


def test_ppo_clip_by_hand():
    logp = T(math.log(1.5), math.log(0.5), math.log(1.1))
    old = T(0.0, 0.0, 0.0)
    adv = T(2.0, 2.0, -1.0)
    loss, clipped = rl_loss.clipped_objective(logp[None], old[None], adv[None], 0.2)
    # ratio 1.5, A>0: min(3.0, 1.2*2) = 2.4; ratio 0.5, A>0: min(1.0, 0.8*2=1.6) = 1.0; ratio 1.1 in range: -1.1
    assert loss[0].tolist() == pytest.approx([-2.4, -1.0, 1.1])
    assert clipped[0].tolist() == [True, False, False]
    per_seq = rl_loss.clipped_objective(logp[None], old[None], T(2.0), 0.2)[0]  # one advantage per sequence
    assert per_seq[0].tolist() == pytest.approx([-2.4, -1.0, -2.2])


def test_kl_k3_and_masked_mean_by_hand():
    k3 = rl_loss.kl_k3(T(0.0, math.log(0.5)), T(0.0, 0.0))
    assert k3.tolist() == pytest.approx([0.0, math.exp(math.log(2)) - math.log(2) - 1])
    assert rl_loss.masked_mean(T(1.0, 2.0, 9.0), T(1.0, 1.0, 0.0)).item() == 1.5


def test_gae_returns_and_value_loss_by_hand():
    rewards = T(0.0, 1.0, 0.0)[None]
    values = T(0.5, 0.2, 9.0)[None]  # the third token is padding
    mask = T(1.0, 1.0, 0.0)[None]
    adv, ret = rl_loss.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    d1 = 1.0 + 0.0 - 0.2  # the last token: nothing after it
    d0 = 0.0 + 0.9 * 0.2 - 0.5
    assert adv[0].tolist() == pytest.approx([d0 + 0.9 * 0.5 * d1, d1, 0.0])
    assert ret[0].tolist() == pytest.approx([d0 + 0.45 * d1 + 0.5, d1 + 0.2, 0.0])
    v, old, target = T(1.0, 0.0)[None], T(0.0, 0.0)[None], T(0.0, 1.0)[None]
    # token 1: unclipped (1-0)^2=1, clipped (0.2-0)^2=0.04 -> 1; token 2: (0-1)^2 = 1 both
    assert rl_loss.value_loss(v, old, target, T(1.0, 1.0)[None], 0.2).item() == pytest.approx(0.5 * (1 + 1) / 2)
    per_token = rl_loss.token_rewards(T(2.0), T(1.0, 1.0, 0.0)[None], T(0.1, 0.3, 0.0)[None], 0.5)
    assert per_token[0].tolist() == pytest.approx([-0.05, -0.15 + 2.0, 0.0])


def test_rl_recipes_refuse_what_cannot_work(tmp_path):
    from steer.config import load_recipe
    from steer.errors import ConfigError

    base = {"kind": "rl", "model": {"name_or_path": "x"}, "data": {"sources": [{"path": "p.jsonl"}]},
            "rl": {"reward": "length"}}
    for change, word in (({"rl": {"reward": "length", "group_size": 1}}, "at least 2"),
                         ({"rl": {"reward": "length", "lambda_init": 1.0}}, "needs a cost judge"),
                         ({"data": {"sources": [{"path": "p"}], "validation": [{"path": "v"}]}}, "measured by its rollouts")):
        path = tmp_path / "r.yaml"
        path.write_text(json.dumps({**base, **change}))
        with pytest.raises(ConfigError, match=word):
            load_recipe(path)


def _recipe(tmp_path, shared_assets, **rl):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Tell me a story about {w}."}) + "\n"
                               for i, w in enumerate(["a cat", "a dog", "the sea", "a hat", "rain", "a box", "snow", "tea"])))
    recipe = {"kind": "rl", "model": {"name_or_path": str(shared_assets / "models/stories260k")},
              "template": {"kind": "steerlm"}, "data": {"sources": [{"path": str(prompts)}], "max_length": 512},
              "rl": {"reward": "fkgl", "cost": "length", "threshold": 10.0, "lambda_lr": 0.01, "group_size": 2,
                     "max_new_tokens": 16, **rl},
              "train": {"method": "full", "epochs": 1, "batch_size": 2, "learning_rate": 1e-3, "save_steps": 2,
                        "logging_steps": 1, "seed": 3, "output_dir": str(tmp_path / "rl")}}
    path = tmp_path / "rl.yaml"
    path.write_text(json.dumps(recipe))
    return path


def _per_step(run_dir):
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return {r["step"]: r for r in rows if "reward" in r}


@pytest.mark.parametrize("algorithm", ["grpo", pytest.param("ppo", marks=pytest.mark.slow)])  # the default suite's budget
def test_a_resumed_rl_run_equals_an_uninterrupted_one(tmp_path, shared_assets, algorithm):
    """Killed after its step-2 checkpoint and resumed: the same rollouts (seeded by the step), lambda, value
    head and weights as a run that was never stopped."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from steer.config import load_recipe
    from steer.train import train

    path = _recipe(tmp_path, shared_assets, algorithm=algorithm)
    straight = train(load_recipe(path, [f"train.output_dir={tmp_path / 'straight'}"]))

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt

    broken = load_recipe(path, [f"train.output_dir={tmp_path / 'broken'}"])
    with pytest.raises(KeyboardInterrupt):
        train(broken, callbacks=[Crash()])
    assert json.loads((tmp_path / "broken/checkpoint-2/rl_state.json").read_text())["lambda"] >= 0
    resumed = train(broken, resume=True)
    assert resumed.resumed_from.endswith("checkpoint-2") and resumed.steps == straight.steps == 4
    a, b = _per_step(straight.run_dir), _per_step(resumed.run_dir)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        for name in ("reward", "cost", "lambda", "kl", "length", "entropy"):
            assert b[step][name] == pytest.approx(a[step][name], abs=1e-5), (step, name)
    assert a[4]["lambda"] > 0  # answers longer than the bound: lambda rose
    if algorithm == "ppo":
        assert "value_loss" in a[4] and (tmp_path / "broken/checkpoint-2/value_head.safetensors").is_file()
    wa, wb = (load_file(str(r.run_dir / "model.safetensors")) for r in (straight, resumed))
    assert not any("value_head" in k for k in wa)  # the critic stays out of the policy's weights
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    if algorithm == "ppo":  # a plain causal LM after export
        from transformers import AutoModelForCausalLM

        assert run_cli("export", str(resumed.run_dir), "--out", str(tmp_path / "plain")).returncode == 0
        plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "plain"))
        assert torch.allclose(plain.state_dict()["model.norm.weight"], wa["model.norm.weight"], atol=1e-6)


@pytest.mark.slow  # two 60-step runs from the fast quickstart's model
def test_constrained_rl_raises_the_reward_within_the_bound_and_the_unconstrained_run_violates_it(quickstart_fast, tmp_path):
    """``recipes/tiny/synth-rl.yaml`` on the synthetic world: asked for correctness 1 and verbosity 4, the
    policy is rewarded for right facts (oracle) under a bound of 2 on verbosity. Constrained: the reward
    rises, the cost ends within the bound, and lambda rose at every step whose cost was over it.
    Unconstrained (lambda_lr 0, the cost still measured): the reward rises and the bound is violated."""
    from steer import synth
    from steer.config import load_recipe
    from steer.train import train

    prompts = synth.write_prompts(tmp_path / "rl-prompts.jsonl", 400, seed=0, stream=2)
    base = [f"model.name_or_path={quickstart_fast[0] / 'model'}", f"data.sources.0.path={prompts}"]
    recipe = REPO / "recipes/tiny/synth-rl.yaml"
    constrained = train(load_recipe(recipe, [*base, f"train.output_dir={tmp_path / 'c'}"])).run_dir
    free = train(load_recipe(recipe, [*base, "rl.lambda_lr=0", f"train.output_dir={tmp_path / 'u'}"])).run_dir
    from steer.evaluate.curves import evaluate

    report = evaluate([str(constrained), str(free)], ["reward", "cost", "lambda", "judge/correctness"])
    c, u = report["runs"][str(constrained)], report["runs"][str(free)]
    print({run: {m: (round(v["first"], 2), round(v["last"], 2)) for m, v in found.items()} for run, found in report["runs"].items()})
    # measured: 0.59 -> 1.80 before the decoder changes of 2026-12-03/04 (vector hooks, per-row generators),
    # 0.82 -> 1.28 after them, on the same recipe and seeds (other rollouts; the cause is not pinned down)
    assert c["reward"]["last"] >= c["reward"]["first"] + 0.4
    assert c["cost"]["first"] > 2.0 >= c["cost"]["last"]  # measured: 4.00 -> 0.00
    assert c["lambda"]["max"] > 1.0  # measured: 3.82
    steps = [(cost, lam) for (_, cost), (_, lam) in zip(c["cost"]["series"], c["lambda"]["series"])]
    for (cost, lam), (_, after) in zip(steps, steps[1:]):
        assert (after > lam) == (cost > 2.0) or (cost <= 2.0 and lam == after == 0.0)  # dual ascent, step by step
    assert u["reward"]["last"] >= u["reward"]["first"] + 1.0  # measured: 0.59 -> 3.47, then 0.82 -> 2.97
    assert u["cost"]["last"] > 2.0 and u["lambda"]["max"] == 0.0  # measured: 3.91
    monitored, rewarded = ([v for _, v in c[m]["series"]] for m in ("judge/correctness", "reward"))
    assert monitored == pytest.approx(rewarded, abs=1e-5)  # the monitor sees what the reward saw


def test_rollout_prompts_from_prompt_rows_and_from_any_dataset(tmp_path, shared_assets):
    """Prompt rows keep their own steering over rl.attributes and travel whole to the judges; a training
    dataset gives each distinct prompt once; a bad row is one line naming it unless skip_invalid."""
    from steer.config import load_recipe
    from steer.train.loop import recipe_encoder
    from steer.train.tasks import rl
    from tests import fixtures

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": "a", "prompt": "Hi", "field": "colour"}) + "\n"
                    + json.dumps({"id": "b", "messages": [{"role": "user", "content": "Yo"}],
                                  "attributes": {"verbosity": 0}}) + "\n")
    pku = fixtures.write(fixtures.pku_rows(), tmp_path / "pku.jsonl")
    path = tmp_path / "rl.yaml"
    path.write_text(json.dumps({
        "kind": "rl", "model": {"name_or_path": str(shared_assets / "models/stories260k")},
        "template": {"kind": "steerlm", "schema": "helpsteer"},
        "data": {"sources": [{"path": str(rows)}, {"path": str(pku), "format": "pku-saferlhf"}], "max_length": 512},
        "rl": {"reward": "length", "attributes": {"verbosity": 4}}}))
    recipe = load_recipe(path)
    dataset, none = rl.datasets(recipe, recipe_encoder(recipe, rl.TASK), None)
    assert none is None and len(dataset) == 2 + len({r["prompt"] for r in fixtures.pku_rows()})
    first, second = dataset[0], dataset[1]
    assert "verbosity:4" in first["prompt"] and "verbosity:0" in second["prompt"]  # the row's own wins
    assert json.loads(first["row"])["field"] == "colour"  # what an oracle reads comes along
    batch = rl.collate([first, second])
    assert batch["rows"][0]["id"] == "a" and batch["prompts"][1] == second["prompt"]
    rows.write_text(rows.read_text() + json.dumps({"prompt": "no id"}) + "\n")
    with pytest.raises(Exception, match="each row is an object with an 'id'"):
        rl.datasets(recipe, recipe_encoder(recipe, rl.TASK), None)
    recipe.data.skip_invalid = True
    assert len(rl.datasets(recipe, recipe_encoder(recipe, rl.TASK), None)[0]) == len(dataset)


@pytest.mark.slow  # three CLI processes
def test_cli_train_rl_bad_judges_are_one_line_errors(tmp_path, shared_assets):
    path = _recipe(tmp_path, shared_assets, reward="oracle", cost=None)
    done = run_cli("train", "rl", str(path))
    assert done.returncode == 2 and "rl.reward: oracle measures every attribute: say which with rl.reward_attribute" in done.stderr
    assert "Traceback" not in done.stderr
    path = _recipe(tmp_path, shared_assets, reward="length", reward_attribute="correctness")
    done = run_cli("train", "rl", str(path))
    assert done.returncode == 2 and "length measures verbosity, not correctness" in done.stderr
    done = run_cli("data", "prepare", str(path))
    assert done.returncode == 2 and "nothing to prepare" in done.stderr, done.stderr


def test_eval_curves_reads_any_run_s_metrics_and_names_what_is_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "reward": float(s), "lambda": 0.5 * s, "time": 1.0} for s in range(1, 6)] + [{"step": 5, "train_loss": 1}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = invoke_cli("eval", "curves", str(run), "-m", "reward", "-m", "lambda", "--window", "2", "--json",
                      "--plot", str(tmp_path / "c.png"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["runs"][str(run)]
    assert report["reward"] == {"first": 1.0, "last": 4.5, "min": 1.0, "max": 5.0, "steps": 5,
                                "series": [[s, float(s)] for s in range(1, 6)]}
    assert (tmp_path / "c.png").stat().st_size > 0
    missing = invoke_cli("eval", "curves", str(run), "-m", "cost")
    assert missing.returncode == 2 and "no run logged cost (logged: lambda, reward, train_loss)" in missing.stderr
    (run / "metrics.jsonl").write_text("{not json\n")
    bad = invoke_cli("eval", "curves", str(run))
    assert bad.returncode == 2 and "metrics.jsonl:1: not valid JSON" in bad.stderr


@pytest.mark.slow  # two processes under torchrun
def test_rl_under_torchrun_on_cpu(tmp_path, shared_assets):
    """``--nproc 2`` (gloo): each process samples its own prompts, lambda's dual step sees both."""
    path = _recipe(tmp_path, shared_assets)
    done = run_cli("train", "rl", str(path), "--nproc", "2", "--json", timeout=600, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["steps"] == 2  # 8 prompts, 2 per process and step; stdout is the result alone
    steps = _per_step(tmp_path / "rl")
    assert steps[2]["lambda"] > 0 and json.loads((tmp_path / "rl/checkpoint-2/rl_state.json").read_text())["lambda"] > 0


def test_a_checkpoint_s_rl_state_that_does_not_fit_is_a_one_line_error(tmp_path):
    from steer.errors import UsageError
    from steer.train.tasks import rl

    head = rl.ValueHead.build(4)
    with pytest.raises(UsageError, match="not a checkpoint of an RL run"):
        rl.load_state(tmp_path, None, 0.0)
    (tmp_path / rl.STATE_FILE).write_text("{oops")
    with pytest.raises(UsageError, match="not an RL state file"):
        rl.load_state(tmp_path, None, 0.0)
    rl.save_state(tmp_path, 1.5, None)  # a grpo checkpoint resumed as ppo
    with pytest.raises(UsageError, match="not of a ppo run"):
        rl.load_state(tmp_path, head, 0.0)
    rl.save_state(tmp_path, 2.5, head)
    assert rl.load_state(tmp_path, head, 0.0) == 2.5


def test_answer_ids_keep_the_end_of_sequence_token_a_response_stopped_on():
    from steer.engines.base import Response
    from steer.train.tasks.rl import answer_ids

    assert answer_ids(Response("hi", [5, 6], "stop", 1, 2, 0.0, end_id=2)) == [5, 6, 2]
    assert answer_ids(Response("hi", [5, 6], "length", 1, 2, 0.0)) == [5, 6]
