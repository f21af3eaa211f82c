"""The CUDA-only precision paths on a CPU: bf16 autocast in a training step and an evaluation, torch.compile."""

import pytest
import torch

from satlib import runtime
from satlib.build import build_datasets, build_model, test_loader
from satlib.checkpoint import load_checkpoint
from satlib.evaluate import evaluate_model
from satlib.evaluation import LocalizationEvaluator
from satlib.losses import SATLoss
from satlib.runtime import Dist
from satlib.train import train


@pytest.fixture
def cpu_autocast(monkeypatch):
    """train.amp turns bf16 autocast on on the CPU too, as it does on CUDA."""
    monkeypatch.setattr(runtime, "AUTOCAST_DEVICE_TYPES", frozenset({"cuda", "cpu"}))


def _watch_evaluator(monkeypatch) -> list[dict]:
    """Record the dtypes every LocalizationEvaluator.update receives."""
    calls = []
    real = LocalizationEvaluator.update

    def update(self, maps, boxes, logits=None, labels=None, gt_masks=None):
        calls.append({"maps": maps.dtype, "logits": None if logits is None else logits.dtype})
        return real(self, maps, boxes, logits, labels, gt_masks)

    monkeypatch.setattr(LocalizationEvaluator, "update", update)
    return calls


def test_evaluation_runs_ten_crop_under_autocast_and_scores_fp32(tiny_config, cpu_autocast, monkeypatch):
    config = tiny_config(**{"eval.tencrop": True, "data.resize_size": 40, "eval.batch_size": 4})
    model = build_model(config, num_classes=3).eval()
    forwards = []
    real_forward = type(model).forward

    def forward(self, images):
        out = real_forward(self, images)
        forwards.append((len(images), torch.is_autocast_enabled("cpu"), out.logits.dtype))
        return out

    monkeypatch.setattr(type(model), "forward", forward)
    calls = _watch_evaluator(monkeypatch)
    _, test_set = build_datasets(config, train=False)
    metrics = evaluate_model(model, test_loader(test_set, config, Dist()), config, torch.device("cpu"), cam=True)
    crops = [f for f in forwards if f[0] == 10 * 4 or f[0] == 10 * (len(test_set) % 4)]
    assert crops and all(enabled for _, enabled, _ in forwards), forwards  # ten crops in the step's precision
    assert all(dtype == torch.bfloat16 for _, _, dtype in forwards)  # the network really ran in bf16
    assert calls and all(c["maps"] == torch.float32 and c["logits"] == torch.float32 for c in calls)
    assert metrics.pop("images") == len(test_set)  # a count; every score is a plain float
    assert metrics and all(isinstance(value, float) for value in metrics.values()), metrics


@pytest.mark.trains
def test_training_step_under_autocast_has_fp32_loss_terms(tiny_config, cpu_autocast, monkeypatch):
    seen = []
    real_loss = SATLoss.forward

    def loss(self, out, labels, **kwargs):
        total, terms = real_loss(self, out, labels, **kwargs)
        seen.append((out.logits.dtype, total.dtype, {name: value.dtype for name, value in terms.items()},
                     torch.is_autocast_enabled("cpu")))
        return total, terms

    monkeypatch.setattr(SATLoss, "forward", loss)
    calls = _watch_evaluator(monkeypatch)
    record = train(tiny_config(**{"train.epochs": 1}), progress=False)
    assert seen and all(autocast and logits == torch.bfloat16 for logits, _, _, autocast in seen)  # a bf16 step
    assert all(total == torch.float32 and set(terms.values()) == {torch.float32} for _, total, terms, _ in seen)
    assert calls and all(c["maps"] == torch.float32 and c["logits"] == torch.float32 for c in calls)
    numbers = {k: v for k, v in record.items() if k not in ("stopped_early",)}
    assert all(isinstance(value, (int, float)) and value == value for value in numbers.values()), numbers


@pytest.mark.slow
def test_compiled_training_saves_plain_keys(tiny_config, tmp_path):
    """train.compile with a CPU backend: two optimizer steps, a checkpoint without torch.compile's prefix."""
    config = tiny_config(**{"train.epochs": 1, "train.batch_size": 12, "train.compile": True,
                            "train.compile_backend": "aot_eager"})
    torch._dynamo.reset()
    record = train(config, progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert record["step"] == state["step"] == 2
    assert state["model"] and not any("_orig_mod" in key for key in state["model"])
    fresh = build_model(config, num_classes=3)
    assert fresh.load_state_dict(state["model"]) is not None  # strict: every key matches the plain model


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sat_tiny_convstem", "sat_deit_tiny_patch16_224"])
def test_model_forward_compiles_without_graph_breaks(tiny_config, name):
    config = tiny_config(**{"model.name": name, "model.kwargs": {"embed_dim": 32, "depth": 3, "num_heads": 2}})
    config.data.img_size = 32 if name == "sat_tiny_convstem" else 64
    model = build_model(config, num_classes=3).train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, config.data.img_size, config.data.img_size))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_an_official_checkpoint_is_evaluated_in_fp32(tiny_data, tmp_path, cpu_autocast, monkeypatch):
    """As the official evaluator.py runs it: no autocast, whatever train.amp says (CUB's recipe: on)."""
    import satlib
    from satlib.assess import evaluate_checkpoint
    from satlib.models.weights import official_state_dict

    torch.manual_seed(0)
    model = satlib.create_model("sat_deit_tiny_patch16_224", num_classes=3)
    torch.save({"model": official_state_dict(model), "best_thr": 0.35}, tmp_path / "official.pth.tar")
    loaded = satlib.load(tmp_path / "official.pth.tar", official=True)
    assert loaded.info.config.train.amp  # the config it is rebuilt with asks for bf16 ...
    forwards = []
    real_forward = type(loaded.model).forward

    def forward(self, images):
        out = real_forward(self, images)
        forwards.append((torch.is_autocast_enabled("cpu"), out.logits.dtype))
        return out

    monkeypatch.setattr(type(loaded.model), "forward", forward)
    evaluate_checkpoint(loaded, data_root=tiny_data, official=True, device="cpu")
    assert forwards and all(not enabled and dtype == torch.float32 for enabled, dtype in forwards), forwards
