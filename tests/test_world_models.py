"""World models: the MDN's likelihood by hand, every stage on the tiny `dot` game, CMA-ES, the dream,
resume after Ctrl-C in each stage, the commands and their errors; the real games' smoke tests (slow)."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import sozo
from sozo.data import games
from sozo.errors import SozoError
from sozo.models.world_models import WorldModel, WorldModelConfig
from sozo.models.world_models.agent import dream
from sozo.models.world_models.networks import batched_controller, mdn_nll, sample_mdn
from sozo.models.world_models.search import search
from sozo.runs import Run, load_checkpoint

from .helpers import check_resume, exit_code

TINY = ["preset=tiny"]
QUIET = dict(progress=False, device="cpu", threads=1, log=lambda m: None)


def untrained() -> WorldModel:
    """A tiny world model as built before training (dreams and searches need no trained weights)."""
    torch.manual_seed(0)
    return WorldModel(WorldModelConfig(**WorldModel.presets()["tiny"])).eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The whole pipeline on the dot game: rollouts, V, M, the controller trained in M's dream."""
    return sozo.train("world-model", out=tmp_path_factory.mktemp("wm") / "dot", set=TINY, **QUIET)


def test_the_mdn_loss_is_the_exact_nll_of_a_mixture():
    # one dimension, two components: pi = (0.3, 0.7), mu = (0, 2), sigma = (1, 0.5), x = 1.2
    x, pi, mu, sigma = 1.2, (0.3, 0.7), (0.0, 2.0), (1.0, 0.5)
    hand = -math.log(sum(p * math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
                         for p, m, s in zip(pi, mu, sigma)))
    logpi = torch.log(torch.tensor([[pi]]))  # (1, Z=1, K=2)
    got = mdn_nll(torch.tensor([[x]]), logpi, torch.tensor([[mu]]), torch.log(torch.tensor([[sigma]])))
    assert got.shape == (1, 1)
    assert abs(got.item() - hand) < 1e-5
    # one component of weight 1: the Gaussian's own NLL
    one = mdn_nll(torch.tensor([[0.5]]), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    assert abs(one.item() - (0.5 * 0.25 + 0.5 * math.log(2 * math.pi))) < 1e-6


def test_the_temperature_sharpens_the_mixture_and_widens_each_gaussian():
    logpi = torch.log(torch.tensor([[[0.9, 0.1]]])).expand(4000, 1, 2)
    mu = torch.tensor([[[0.0, 10.0]]]).expand(4000, 1, 2)
    logsigma = torch.log(torch.tensor([[[1.0, 1.0]]])).expand(4000, 1, 2)
    cold = sample_mdn(logpi, mu, logsigma, 0.25, torch.Generator().manual_seed(0))
    hot = sample_mdn(logpi, mu, logsigma, 2.0, torch.Generator().manual_seed(0))
    assert (cold > 5).float().mean() < 0.01 < (hot > 5).float().mean()  # 0.1^4 vs 0.1^0.5 of the weight
    near = hot[hot < 5]
    assert 1.2 < near.std() < 1.6  # sigma * sqrt(2)


def test_the_batched_controller_is_the_linear_controller():
    model = WorldModel(WorldModelConfig(**{**WorldModel.presets()["tiny"]}))
    z, h = torch.randn(3, 4), torch.randn(3, 16)
    params = model.controller_params()
    want = model.controller(z, h)
    assert torch.allclose(batched_controller(params.expand(3, -1), z, h, 1), want, atol=1e-6)


@pytest.mark.slow
def test_all_four_stages_end_to_end(run):
    done = json.loads((run.path / "stages.json").read_text())
    assert list(done) == ["rollouts", "vae", "rnn", "controller"]
    assert len(games.shard_files(run.path / "rollouts")) == 6  # 24 episodes, 4 a shard
    kinds = [r["kind"] for r in run.metrics()]
    assert kinds[0] == "rollouts" and kinds.count("generation") == 4
    gen = [r for r in run.metrics() if r["kind"] == "generation"][0]
    assert gen["worst"] <= gen["mean"] <= gen["best"] and gen["where"] == "dream"
    for stage in ("vae", "rnn"):  # the sub-runs of the one trainer, with their pictures
        sub = Run(run.path / stage)
        assert sub.last_ckpt.exists() and any(r["kind"] == "epoch" for r in sub.metrics())
        assert sorted(sub.samples_dir.glob("epoch-*.png"))
    for picture in ("vae-reconstructions.png", "rnn-predictions.png", "controller.png"):  # what the report shows
        assert (run.path / picture).stat().st_size > 0
    from sozo.viz.report import summarize
    assert {p.name for p in summarize(run)["images"]} >= {"vae-reconstructions.png", "controller.png"}
    ckpt = load_checkpoint(run.last_ckpt)  # weights_only=True
    assert ckpt["stage"] == "controller" and ckpt["fitness"].shape == (4, 10)
    model = sozo.load(run)
    assert model.config.stage == "all" and model.makes == "games"
    scores = model.play(3, seed=5, workers=1)
    assert len(scores) == 3 and scores == model.play(3, seed=5, workers=1)  # fixed seeds, the same episodes


@pytest.mark.slow
def test_the_dream_trained_controller_beats_the_random_policy_in_the_real_game(run):
    model = sozo.load(run)
    mine, rand = model.play(10, seed=100, workers=1), model.play(10, seed=100, workers=1, random_policy=True)
    assert np.mean(mine) > np.mean(rand) + 10, (mine, rand)


def test_dreams_are_reproducible_under_a_seed(tmp_path):
    model = untrained()
    with torch.no_grad():
        model.rnn.head.bias[-1] = -3.0  # episodes that last (an untrained done head ends half of them a step)
    params = model.controller_params().expand(6, -1) + 0.3 * torch.randn(6, model.controller.size())
    z0 = torch.randn(6, 4)

    def once(seed: int) -> tuple[torch.Tensor, list[np.ndarray]]:
        return dream(model.rnn, model.vae, model.game, params, z0, 40, 1.15, torch.Generator().manual_seed(seed),
                     record=True, stats=model.z_stats())
    (a, fa), (b, fb), (c, _) = once(1), once(1), once(2)
    assert torch.equal(a, b) and all(np.array_equal(x, y) for x, y in zip(fa, fb))
    assert not torch.equal(a, c)
    assert model.dream(30, seed=4, record=tmp_path / "d.gif") == model.dream(30, seed=4)
    assert (tmp_path / "d.gif").stat().st_size > 0


@pytest.mark.slow
def test_cma_es_improves_the_controller_in_the_dream(run):
    gens = [r for r in run.metrics() if r["kind"] == "generation"]
    assert gens[-1]["best_so_far"] > gens[0]["mean"]
    assert max(g["mean"] for g in gens[1:]) > gens[0]["mean"]


@pytest.mark.slow
def test_cma_es_improves_the_controller_in_the_real_game(run, tmp_path):
    model = sozo.load(run)
    model.config = replace(model.config, where="real", generations=5, episodes_per_candidate=3)
    search(model, Run(tmp_path / "real"), None, seed=0, workers=1, stop=lambda: False,
           save_model=lambda p, g: None, log=lambda m: None, progress=False)
    gens = [r for r in Run(tmp_path / "real").metrics()]
    assert gens[-1]["mean"] > gens[0]["mean"] + 5, gens


def test_the_rollouts_resume_after_a_ctrl_c(tmp_path, monkeypatch):
    kw = dict(episodes=12, size=16, seed=3, workers=1, per_shard=4, progress=False, log=lambda m: None)
    games.collect_rollouts("dot", tmp_path / "full", **kw)
    original, calls = games._collect_shard, {"n": 0}

    def stop_on_the_second(job):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(job)
    monkeypatch.setattr(games, "_collect_shard", stop_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        games.collect_rollouts("dot", tmp_path / "part", **kw)
    monkeypatch.undo()
    assert len(games.shard_files(tmp_path / "part")) == 1  # the shard finished before the Ctrl-C is kept
    assert len(games.collect_rollouts("dot", tmp_path / "part", **kw)) == 8  # only the two missing shards
    for a, b in zip(games.read_rollouts(tmp_path / "full"), games.read_rollouts(tmp_path / "part"), strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_the_rollouts_hold_each_random_action_for_1_to_repeat_steps():
    class Draws:  # every draw of the random action a new value: the holds can be read off
        n = 0

        def random_action(self, rng):
            self.n += 1
            return np.array([float(self.n)], np.float32)
    policy, rng = games.held_random_policy(4), np.random.default_rng(0)
    draws = Draws()
    acts = np.array([policy(draws, None, rng)[0] for _ in range(8000)])
    holds = np.bincount(np.unique(acts, return_counts=True)[1][:-1])  # the last hold may be cut short
    assert holds[0] == 0 and len(holds) == 5 and (holds[1:] > 650).all()  # 1..4 steps, uniform (~800 each)
    game = games.make_game("dot", 16)  # repeat 1: a new action every step, the episodes of before
    assert np.array_equal(games.play_episode(game, 5, games.held_random_policy(1))["actions"],
                          games.play_episode(game, 5)["actions"])


def test_the_rollout_repeat_follows_the_game_and_old_runs_keep_a_new_action_a_step():
    from sozo.config import with_saved_defaults
    assert WorldModelConfig(env="doom-take-cover").repeat() == 10  # the paper's Doom rollouts
    assert WorldModelConfig(env="dot").repeat() == 1
    assert WorldModelConfig(env="doom-take-cover", rollout_repeat=3).repeat() == 3
    assert with_saved_defaults(WorldModelConfig, {"env": "doom-take-cover"})["rollout_repeat"] == 1
    with pytest.raises(SozoError, match="rollout_repeat"):
        WorldModelConfig(rollout_repeat=-1).validate()


def test_v_resumes_exactly_after_a_ctrl_c(tmp_path, monkeypatch):
    games.collect_rollouts("dot", tmp_path / "rollouts", 8, 16, progress=False, log=lambda m: None)
    check_resume("world-model", tmp_path / "runs", monkeypatch,
                 [*TINY, "stage=vae", f"source={tmp_path / 'rollouts'}"])


@pytest.mark.slow
def test_m_resumes_exactly_after_a_ctrl_c(run, tmp_path, monkeypatch):
    # M's sub-run reads V's codes and V's weights beside them: a copy of the run's
    import shutil
    shutil.copytree(run.path / "vae" / "model", tmp_path / "vae" / "model")
    shutil.copy(run.path / "series.npz", tmp_path / "series.npz")
    check_resume("world-model", tmp_path / "runs", monkeypatch,
                 [*TINY, "stage=rnn", f"source={tmp_path / 'series.npz'}"], stop_at=3, epochs=5)  # a batch an epoch


def test_the_controller_search_resumes_exactly_after_a_ctrl_c(tmp_path):
    model = untrained()
    z0 = torch.randn(8, 4)
    kw = dict(seed=0, workers=1, save_model=lambda p, g: None, log=lambda m: None, progress=False)
    search(model, Run(tmp_path / "full"), z0, stop=lambda: False, **kw)
    calls = {"n": 0}

    def ctrl_c_after_the_first() -> bool:
        calls["n"] += 1
        return calls["n"] == 1
    out = search(model, Run(tmp_path / "part"), z0, stop=ctrl_c_after_the_first, **kw)
    assert out["interrupted"] and out["generation"] == 1
    resumed = search(model, Run(tmp_path / "part"), z0, stop=lambda: False, **kw)
    assert resumed["generation"] == 4
    a, b = load_checkpoint(Run(tmp_path / "full").last_ckpt), load_checkpoint(Run(tmp_path / "part").last_ckpt)
    assert torch.equal(a["fitness"], b["fitness"]) and torch.equal(a["best_params"], b["best_params"])
    assert torch.equal(a["last_candidates"], b["last_candidates"])


@pytest.mark.slow
def test_play_dream_and_evaluate_commands(run, tmp_path, capsys):
    assert exit_code(["play", str(run.path), "--episodes", "2", "--seed", "1", "--workers", "1",
                      "--record", str(tmp_path / "p.gif")]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "over 2 episode(s)" in out and (tmp_path / "p.gif").exists()
    assert exit_code(["dream", str(run.path), "--steps", "20", "--record", str(tmp_path / "d.gif")]) == 0
    assert "survived" in capsys.readouterr().out
    results, table = sozo.evaluate(run, episodes=4, log=None)
    r = results[str(run.path)]
    assert r["episodes"] == 4 and len(r["scores"]) == len(r["random_scores"]) == 4
    assert r["min"] <= r["mean"] <= r["max"] and "random policy, mean" in table
    assert json.loads((run.path / "eval.json").read_text())["episodes"] == 4


def test_bad_input_gets_clear_errors(tmp_path, capsys):
    run = Run(tmp_path / "some-run")
    assert exit_code(["train", "world-model", "--env", "pong", "--out", str(tmp_path / "x")]) == 2
    assert "known: doom-take-cover, car-racing, dot" in capsys.readouterr().err
    with pytest.raises(SozoError, match="known: doom-take-cover, car-racing, dot"):
        games.make_game("space-invaders", 64)
    assert exit_code(["play", str(run.path), "--episodes", "0"]) == 2
    assert "--episodes must be at least 1" in capsys.readouterr().err
    assert exit_code(["play", str(run.path), "--record", str(tmp_path / "a.mp4")]) == 2
    assert "unsupported file type '.mp4'" in capsys.readouterr().err
    with pytest.raises(SozoError, match="where=dream needs a game scored by survival"):
        WorldModelConfig(env="car-racing", where="dream").validate()
    # M (and the controller after it) before V exists
    with pytest.raises(SozoError, match="M is trained on V's codes"):
        sozo.train("world-model", data=str(tmp_path / "series.npz"), out=tmp_path / "m", set=[*TINY, "stage=rnn"],
                   **QUIET)
    started = tmp_path / "started"
    started.mkdir()
    (started / "stages.json").write_text('{"rollouts": {}}')
    assert exit_code(["play", str(started)]) == 2
    assert "has no controller yet (stages done: rollouts)" in capsys.readouterr().err


def test_a_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # import vizdoom now raises ImportError
    with pytest.raises(SozoError) as e:
        games.make_game("doom-take-cover", 64)
    assert "sozo[games]" in (e.value.hint or "")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["doom-take-cover", "car-racing"])
def test_the_real_games_take_a_few_steps(name):
    pytest.importorskip("gymnasium")
    pytest.importorskip("vizdoom" if name == "doom-take-cover" else "Box2D")
    game = games.make_game(name, 64)
    try:
        frame = game.reset(0)
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
        total = 0.0
        for _ in range(5):
            frame, r, done = game.step(game.random_action(np.random.default_rng(0)))
            total += r
        assert frame.shape == (64, 64, 3) and game.t == 5 and not done
        if name == "doom-take-cover":
            assert total == 5.0  # one point a tic survived: the score is the tics survived
    finally:
        game.close()
