import json
import math

import pytest
import torch

from satlib.build import build_model
from satlib.checkpoint import load_checkpoint
from satlib.config import load_config
from satlib.losses import SATLoss
from satlib.train import (
    TimeBudgetExceeded,
    TrainingDiverged,
    accumulation,
    constraint_ramp,
    learning_rate,
    param_groups,
    train,
)


def test_one_step_changes_weights_and_lowers_the_loss(tiny_config):
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config, num_classes=3)
    loss_fn = SATLoss(config.train.area_thr)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 3
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first, _ = loss_fn(model(images), labels)
    first.backward()
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "loc_token" in changed and "head.weight" in changed and "blocks.0.attn.qkv.weight" in changed
    second, _ = loss_fn(model(images), labels)
    assert second.item() < first.item()


def _group_names(model, groups) -> list[set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [{names[id(p)] for p in group["params"]} for group in groups]


def test_param_groups_keep_tokens_out_of_decay_by_default(tiny_config):
    model = build_model(tiny_config(), num_classes=3)
    decay, no_decay = param_groups(model, 0.05)
    decayed, kept = _group_names(model, [decay, no_decay])
    assert {"pos_embed", "cls_token", "loc_embed", "loc_token", "head.bias", "norm.weight"} <= kept
    assert "head.weight" in decayed
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_decay_tokens_decays_what_the_official_wrapped_optimizer_decays(tiny_config):
    """The official create_optimizerv2 gets the DataParallel/DDP wrapper: no `no_weight_decay` there, names with
    `module.`, so only 1-D parameters and biases skip decay. The paper recipes do the same."""
    model = build_model(tiny_config(), num_classes=3)
    official = torch.nn.DataParallel(model)
    assert not hasattr(official, "no_weight_decay")
    expected = {n.removeprefix("module.") for n, p in official.named_parameters()
                if p.ndim > 1 and not n.endswith(".bias")}  # the official get_parameter_groups, skip_list empty
    decayed, kept = _group_names(model, param_groups(model, 0.05, decay_tokens=True))
    assert decayed == expected and {"pos_embed", "cls_token", "loc_token", "loc_embed"} <= decayed
    assert load_config("cub").train.decay_tokens and load_config("imagenet").train.decay_tokens
    assert not load_config("synthetic_cpu").train.decay_tokens


@pytest.mark.trains
def test_train_builds_its_optimizer_with_the_config_switch(tiny_config, monkeypatch):
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    decayed = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, *args: decayed.append(sum(p.numel() for p in optimizer.param_groups[0]["params"])))
    try:
        for decay_tokens in (False, True):
            train(tiny_config(**{"train.decay_tokens": decay_tokens, "train.epochs": 1, "train.max_steps": 1}),
                  progress=False)
    finally:
        handle.remove()
    model = build_model(tiny_config(), num_classes=3)
    tokens = sum(getattr(model, name).numel() for name in ("pos_embed", "cls_token", "loc_token", "loc_embed"))
    assert decayed[1] - decayed[0] == tokens


def test_cosine_schedule_matches_the_official_formula():
    config = load_config(overrides=["train.lr=1.0", "train.min_lr=0.0", "train.epochs=10", "train.warmup_epochs=2"])
    total = 100  # 10 steps per epoch: 20 warmup steps, then 80 of cosine
    warm = [learning_rate(s, total, config) for s in range(20)]
    assert warm[0] == 0.0 and warm[-1] == pytest.approx(1.0)  # np.linspace(0, base, 20)
    assert all(b > a for a, b in zip(warm, warm[1:]))
    assert learning_rate(20, total, config) == pytest.approx(1.0)
    assert learning_rate(60, total, config) == pytest.approx(0.5 * (1 + math.cos(math.pi * 40 / 80)))
    constant = load_config(overrides=["train.schedule=constant", "train.lr=0.3"])
    assert learning_rate(57, total, constant) == 0.3


def test_constraint_ramp_is_linear_in_steps():
    config = load_config(overrides=["train.epochs=10", "train.constraint_warmup_epochs=2"])
    total = 100  # the ramp spans the first 20 steps
    assert constraint_ramp(0, total, config) == 0.0
    assert constraint_ramp(5, total, config) == pytest.approx(0.25)
    assert constraint_ramp(20, total, config) == constraint_ramp(90, total, config) == 1.0
    official = load_config(overrides=["train.constraint_warmup_epochs=0"])
    assert constraint_ramp(0, total, official) == 1.0


def test_trailing_micro_batches_form_one_last_smaller_step():
    """Chapter 7's few-shot ImageNet (1 image a class, 4 x 128): 7 micro-batches an epoch are 4 + 3, two steps."""
    assert [accumulation(m, 7, 4) for m in range(7)] == [(4, False)] * 3 + [(4, True)] + [(3, False)] * 2 + [(3, True)]
    assert [accumulation(m, 8, 4) for m in range(8)] == ([(4, False)] * 3 + [(4, True)]) * 2
    assert [accumulation(m, 3, 1) for m in range(3)] == [(1, True)] * 3


@pytest.mark.trains
def test_accumulated_steps_never_carry_gradients_into_the_next_epoch(tiny_config, monkeypatch):
    """3 micro-batches an epoch at grad_accum 2: steps of 2 and 1, each loss divided by its own step's count."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    events = []
    real_forward = SATLoss.forward

    def recorded(self, out, labels, **kwargs):
        total, terms = real_forward(self, out, labels, **kwargs)
        total.register_hook(lambda grad: events.append(float(grad)))  # d(backpropagated loss) / d(loss)
        return total, terms

    monkeypatch.setattr(SATLoss, "forward", recorded)
    handle = register_optimizer_step_post_hook(lambda *args: events.append("step"))
    try:
        record = train(tiny_config(**{"train.grad_accum": 2, "train.eval_every": 0}), progress=False)
    finally:
        handle.remove()
    assert record["step"] == 4
    assert events == [0.5, 0.5, "step", 1.0, "step"] * 2


def test_train_writes_checkpoint_and_metrics(trained_run):
    out, record = trained_run.out, trained_run.record
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 3 and state["step"] == 9 and state["config"]["model"]["num_classes"] == 3
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("top1_cls", "gt_known", "top1_loc", "maxboxacc", "best_threshold", "cam_gt_known", "loss"):
        assert key in metrics and key in record
    assert 0.0 <= metrics["gt_known"] <= 100.0 and len(metrics["history"]) == 3
    assert metrics["stopped_early"] is False and "stop_reason" not in metrics
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "checkpoint.pt", "config.yaml", "metrics.json"]


def without_timings(metrics: dict) -> dict:
    """metrics.json with the wall-clock seconds of every record removed."""
    drop = lambda record: {k: v for k, v in record.items() if k != "time"}  # noqa: E731
    return {**drop(metrics), "history": [drop(r) for r in metrics["history"]]}


def test_same_seed_same_threads_same_metrics(trained_run, tmp_path):
    """The schedule is counted in steps: a rerun on this machine reproduces every number."""
    again = train(load_config("synthetic_cpu", trained_run.overrides(tmp_path / "again")), progress=False)
    first = json.loads((trained_run.out / "metrics.json").read_text())
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert without_timings(second) == without_timings(first)
    assert {k: v for k, v in again.items() if k != "time"} == {k: v for k, v in trained_run.record.items()
                                                              if k != "time"}


@pytest.mark.trains
def test_time_budget_stops_after_a_step_evaluates_saves_and_warns(tiny_config, tmp_path):
    config = tiny_config(**{"train.epochs": 3, "train.time_budget": 1e-9})
    with pytest.warns(TimeBudgetExceeded, match=r"time_budget=1e-09s reached after optimizer step 1 of 9.*"
                                                 r"not the recipe's reference result"):
        record = train(config, progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["stopped_early"] is True and metrics["stopped_early"] is True
    assert metrics["stop_reason"] == record["stop_reason"]
    assert record["step"] == 1 and len(metrics["history"]) == 1  # the step in flight finishes, then it stops
    assert "gt_known" in metrics and "cam_gt_known" in metrics  # the closing evaluation ran
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 1
    # the lr of that step is the schedule's at step 0 of 9, whatever the clock says
    assert record["lr"] == learning_rate(0, 9, config)


def test_resume_continues_exactly(trained_run, tiny_config, tmp_path):
    straight = trained_run.record

    class Interrupt(Exception):
        pass

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Interrupt

    config = tiny_config(**{"train.out": str(tmp_path / "b"), "train.epochs": 3})
    with pytest.raises(Interrupt):
        train(config, progress=False, on_epoch=stop_after_first)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    resumed = train(tiny_config(**{"train.out": str(tmp_path / "b"), "train.epochs": 3}), resume=True,
                    progress=False)
    a = json.loads((trained_run.out / "metrics.json").read_text())["history"]
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())["history"]
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    assert straight["gt_known"] == resumed["gt_known"] and straight["step"] == resumed["step"]
    state_a = load_checkpoint(trained_run.checkpoint)["model"]
    state_b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_resume_without_checkpoint_is_a_clear_error(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config(), resume=True, progress=False)


@pytest.mark.trains
def test_crash_while_saving_keeps_the_previous_checkpoint(tiny_config, tmp_path, monkeypatch):
    config = tiny_config(**{"train.epochs": 2})
    out = tmp_path / "run"
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        if obj["epoch"] == 2:  # epoch 2: write half a file, then die
            f.write(b"PK\x03\x04 partial")
            raise OSError("disk went away")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk went away"):
        train(config, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "checkpoint.pt", "config.yaml", "metrics.json"]


@pytest.mark.trains
def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    config = tiny_config(**{"train.epochs": 3})
    real_forward = SATLoss.forward
    seen = []

    def poisoned(self, out, labels, **kwargs):
        total, terms = real_forward(self, out, labels, **kwargs)
        seen.append(1)
        return (total * float("nan") if len(seen) > 3 else total), terms  # 3 steps per epoch

    monkeypatch.setattr(SATLoss, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="nan.*epoch 2.*last good checkpoint"):
        train(config, progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_batch_size_must_split_across_processes(tiny_config):
    from satlib.build import train_loader
    from satlib.data import build_dataset
    from satlib.runtime import Dist

    config = tiny_config(**{"train.batch_size": 7})
    dataset = build_dataset("cub", config.data.root, "train", img_size=32, resize_size=32)
    with pytest.raises(ValueError, match="not divisible by 2"):
        train_loader(dataset, config, Dist(rank=0, world=2))


def test_best_checkpoint_follows_gt_known_plus_top1_loc(trained_run):
    out = trained_run.out
    history = json.loads((out / "metrics.json").read_text())["history"]
    scores = [h["gt_known"] + h["top1_loc"] for h in history]
    best = load_checkpoint(out / "best.pt")
    assert best["epoch"] == 1 + scores.index(max(scores))  # the first epoch reaching the maximum
    assert "optimizer" not in best and best["metrics"]["gt_known"] == history[best["epoch"] - 1]["gt_known"]


@pytest.mark.trains
def test_quiet_training_logs_nothing_and_trains_the_same(tiny_config, capsys):
    loud = train(tiny_config(**{"train.epochs": 1}), progress=False)
    logged = capsys.readouterr()
    assert "epoch 1" in logged.out + logged.err
    quiet = train(tiny_config(**{"train.epochs": 1}), progress=False, quiet=True)
    logged = capsys.readouterr()
    assert "epoch 1" not in logged.out + logged.err
    assert {k: v for k, v in quiet.items() if k != "time"} == {k: v for k, v in loud.items() if k != "time"}


@pytest.mark.trains
def test_a_step_whose_last_micro_batch_is_unreadable_is_still_taken(tiny_config, monkeypatch):
    """data.skip_bad, one process: an all-unreadable micro-batch at a step's end skips only itself, the step's
    earlier gradients are applied there (not carried into the next step)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import satlib.data.loader as loader_module

    real, calls, events = loader_module.FinishBatches.__call__, [0], []

    def finish(self, samples):
        calls[0] += 1
        return None if calls[0] == 2 else real(self, samples)  # what it returns when every sample was skipped

    monkeypatch.setattr(loader_module.FinishBatches, "__call__", finish)
    real_forward = SATLoss.forward

    def recorded(self, out, labels, **kwargs):
        events.append("loss")
        return real_forward(self, out, labels, **kwargs)

    monkeypatch.setattr(SATLoss, "forward", recorded)
    handle = register_optimizer_step_post_hook(lambda *args: events.append("step"))
    try:
        record = train(tiny_config(**{"train.grad_accum": 2, "train.epochs": 1, "data.skip_bad": True}),
                       progress=False)
    finally:
        handle.remove()
    assert record["step"] == 2 and events == ["loss", "step", "loss", "step"]


@pytest.mark.trains
def test_clip_grad_bounds_the_norm_of_every_step(tiny_config):
    """train.clip_grad > 0: each optimizer step sees gradients of total norm at most clip_grad (far below what
    the tiny recipe's unclipped gradients reach)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        train(tiny_config(**{"train.clip_grad": 0.01, "train.epochs": 1, "train.eval_every": 0}), progress=False)
        clipped = list(norms)
        norms.clear()
        train(tiny_config(**{"train.clip_grad": 0.0, "train.epochs": 1, "train.eval_every": 0}), progress=False)
    finally:
        handle.remove()
    assert len(clipped) == len(norms) == 3
    assert all(0 < norm <= 0.01 * (1 + 1e-5) for norm in clipped), clipped
    assert all(norm > 0.1 for norm in norms), norms  # what clipping cut down


@pytest.mark.trains
def test_a_training_set_smaller_than_a_step_is_the_whole_step(tiny_config, capsys):
    config = tiny_config(**{"data.per_class": 1, "train.epochs": 3})  # 3 images (3 classes), batch_size 8
    record = train(config, progress=False)
    assert record["step"] == 3  # one step of the whole set per epoch
    assert "train.batch_size=8 -> 3 (the training set holds 3 images)" in capsys.readouterr().out
    stored = load_checkpoint(config.train.out + "/checkpoint.pt")["config"]
    assert stored["train"]["batch_size"] == 3


def test_fit_batch_to_data_keeps_process_and_accumulation_splits(tiny_config):
    from satlib.runtime import Dist
    from satlib.train import fit_batch_to_data

    config = tiny_config(**{"train.batch_size": 8, "train.grad_accum": 2})
    fit_batch_to_data(config, 7, Dist(rank=0, world=2))
    assert config.train.batch_size == 2  # 2 micro-batches of 2 (one image a process): 4 of the 7 images
    config = tiny_config(**{"train.batch_size": 8})
    fit_batch_to_data(config, 100, Dist(rank=0, world=1))
    assert config.train.batch_size == 8  # the set holds a full step: unchanged
