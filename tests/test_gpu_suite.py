"""bench/gpu_suite.py (its parts in bench/suite/): the CPU smoke run covers every section; the runner keeps
going past failures."""

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from satlib.config import load_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from suite.harness import SECTIONS, SMOKE, Suite, run_suite  # noqa: E402
from suite.profile_analysis import summarize_profile  # noqa: E402
from suite.recipes import Recipe  # noqa: E402
from suite.report import targets  # noqa: E402
from suite.sections.evaluator import PATHS as EVAL_PATHS  # noqa: E402
from suite.sections.model import MODEL_COMPILED, MODEL_EAGER, MODEL_GRID  # noqa: E402
from suite.sections.training import project, steady_steps  # noqa: E402


def numbers(value) -> list[float]:
    """Every finite int or float inside nested dicts and lists (bools excluded)."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return [value]
    return []


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke run with cold caches: an empty NUMBA_CACHE_DIR, as on a fresh GPU machine."""
    out, cold = tmp_path_factory.mktemp("suite"), tmp_path_factory.mktemp("numba-cache")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_CACHE_DIR": str(cold)}
    result = subprocess.run([sys.executable, "bench/gpu_suite.py", "--smoke", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return json.loads((out / "report.json").read_text()), out, result.stdout


@pytest.mark.slow  # the smoke run: about a minute alone, three on 2 busy cores
def test_smoke_run_reports_every_section_with_numbers_inside_its_budget(smoke):
    """Every section ends "ok" inside the smoke budget although no kernel was compiled beforehand: what needs
    the numba trees waits for nobody (they compile in the background; label propagation scores meanwhile)."""
    report, out, stdout = smoke
    assert list(report["sections"]) == list(SECTIONS)
    for name, entry in report["sections"].items():
        assert entry["status"] == "ok", (name, entry.get("error"))
        assert numbers(entry["results"]), f"{name} has no numbers"
    assert report["suite"]["elapsed_s"] <= SMOKE.budget
    markdown = (out / "report.md").read_text()
    assert all(f"### {name}" in markdown for name in SECTIONS)
    assert "## Targets" in markdown and "--smoke" in markdown
    assert "== summary" in stdout


@pytest.mark.slow  # shares the smoke run above
def test_smoke_prints_the_model_grid_and_the_evaluator_at_the_recipes_thresholds(smoke):
    _, out, stdout = smoke
    grid = stdout[stdout.index("== model"):stdout.index("== eval")].splitlines()
    header = next(i for i, line in enumerate(grid) if line.split()[:1] == ["attention"])
    assert "fp32 img/s" in grid[header] and "bf16 img/s" in grid[header]
    assert [line.split()[0] for line in grid[header + 1:header + 3]] == ["explicit", "sdpa"]
    assert all(len(line.split()) == 5 for line in grid[header + 1:header + 3])  # a figure in every cell
    evaluator = stdout[stdout.index("== eval"):stdout.index("== train_cub")]
    assert "sat, CUB recipe (4 thresholds)" in evaluator and "sat, ImageNet recipe (1 threshold)" in evaluator
    markdown = (out / "report.md").read_text()
    assert "| attention | fp32 | bf16 |" in markdown and "| sat, CUB recipe | propagate" in markdown


@pytest.mark.slow  # shares the smoke run above
def test_smoke_figures_come_from_the_sizes_asked_for(smoke):
    report, out, _ = smoke
    results = {name: entry["results"] for name, entry in report["sections"].items()}
    sizes = SMOKE
    model = results["model"]
    assert set(model["configs"]) == {c.label for c in (*MODEL_EAGER, MODEL_COMPILED)}
    assert {c.label for c in MODEL_GRID} == {"SAT explicit fp32", "SAT sdpa fp32", "SAT explicit bf16", "SAT sdpa bf16"}
    assert all(c["images_per_s"] > 0 and c["tflops"] > 0 for c in model["configs"].values())
    assert model["gflop_per_image"]["sat"] > 0 and model["ratios"]["sat_time_vs_deit"] > 0
    assert model["ratios"]["deterministic_time_vs_default"] > 0 and "AdamW" in model["step"]
    evaluation = results["eval"]
    assert evaluation["paths"] == list(EVAL_PATHS) == ["propagate", "host"]
    assert evaluation["imagenet_maps"] == 50000
    rows = evaluation["rows"]
    assert [(r["protocol"], r["thresholds"]) for r in rows.values()] == [("sat", 4), ("sat", 1),
                                                                         ("sat", sizes.eval_thresholds),
                                                                         ("wsoleval", sizes.eval_thresholds)]
    for row in rows.values():
        assert row["maps"] == sizes.eval_maps and row["batched_s"] > 0 and row["faster"] in EVAL_PATHS
        assert set(row["paths"]) | set(row.get("skipped", {})) == set(EVAL_PATHS)  # host: numba still compiling
        for x in row["paths"].values():  # CUB- and ImageNet-sized from one rate
            assert x["maps"] == sizes.eval_maps and x["ms_per_map"] > 0
            assert x["cub_s"] == pytest.approx(x["ms_per_map"] / 1e3 * sizes.eval_maps)
            assert x["imagenet_s"] == pytest.approx(x["ms_per_map"] / 1e3 * 50000)
        if "speedup" in row:  # wsoleval's loop needs cv2
            assert row["agrees_with_loop"] and row["speedup"] > 0
            assert all(x["agrees_with_loop"] and x["speedup"] > 0 for x in row["paths"].values())
    markdown = (out / "report.md").read_text()
    assert all(f"| {name} | propagate" in markdown for name in rows)
    assert [x["workers"] for x in results["data"]["loaders"]] == [0, 1]
    assert [x["decode_fallbacks"] for x in results["data"]["loaders"]] == [None, None]  # CPU decoding: no nvJPEG
    cub, imagenet = results["train_cub"], results["train_imagenet"]
    assert cub["classes"] == sizes.cub_classes and imagenet["classes"] == sizes.imagenet_classes
    assert cub["micro_batch"] == sizes.cub_batch and cub["run"]["steps"] >= sizes.cub_steps
    assert cub["evaluation"]["images"] == sizes.cub_test and cub["evaluation"]["tencrop"] is True
    assert cub["evaluation"]["cam_extra_s_per_image"] >= 0 and cub["projection"]["cam_s"] >= 0
    assert cub["projection"]["epochs"] == 30 and cub["projection"]["total_s"] > 0
    assert imagenet["projection"]["epochs"] == 1 and imagenet["projection"]["steps_per_epoch"] == 1281167 // 16
    step, batch = results["profile"]["train_step"], results["profile"]["eval_batch"]
    assert step["steps"] == sizes.profile_schedule[2] and step["top_ops"] and batch["top_ops"]
    assert (out / step["trace"]).is_file() and (out / batch["trace"]).is_file()
    assert len(report["targets"]) == 6


@pytest.mark.slow  # waits out a 12 s budget
def test_a_failing_or_slow_section_is_recorded_and_the_suite_goes_on(tmp_path):
    # The budget leaves seconds of slack for writing the reports on a loaded machine: "late" must still
    # start (and be cut at the budget's end, which comes before its own cap), "after" must find nothing left.
    suite = Suite(sizes=replace(SMOKE, budget=12.0, min_section=0.2), device=torch.device("cpu"),
                            out=tmp_path, work=tmp_path / "work", smoke=True)
    suite.report = {"suite": {"command": "test"}, "sections": {}}

    def fails(suite, results):
        results["before"] = 1.5
        raise ValueError("broken on purpose")

    def slow(suite, results):
        results["before"] = 2.5
        time.sleep(30)

    def fine(suite, results):
        results["value"] = 3.5

    start = time.perf_counter()
    run_suite(suite, [("fails", fails, 10), ("slow", slow, 0.3), ("fine", fine, 10), ("late", slow, 100),
                                ("after", fine, 10)])
    assert time.perf_counter() - start < 16
    sections = json.loads((tmp_path / "report.json").read_text())["sections"]
    assert sections["fails"]["status"] == "error" and "broken on purpose" in sections["fails"]["error"]
    assert sections["fails"]["results"] == {"before": 1.5}
    assert sections["slow"]["status"] == "timeout" and sections["slow"]["results"] == {"before": 2.5}
    assert sections["slow"]["seconds"] < 1
    assert sections["fine"]["status"] == "ok" and sections["fine"]["results"] == {"value": 3.5}
    assert sections["late"]["status"] == "timeout"  # capped by what is left of the 12 s budget
    assert sections["after"]["status"] == "skipped"
    assert "### fails" in (tmp_path / "report.md").read_text()


def test_steady_steps_splits_step_time_from_epoch_boundaries():
    # Three epochs: steps 1 s apart (2 s for an epoch's second step), 3 s across each boundary; the
    # callbacks run at 4.5, 11.5 and 20 (the last epoch's closing evaluation takes the extra time).
    times = [1, 2, 3, 4, 7, 9, 10, 11, 14, 16, 17, 18]
    out = steady_steps([float(t) for t in times], [4.5, 11.5, 20.0], warm=1)
    inside = [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert out["step_s"] == pytest.approx(sum(inside) / len(inside))
    assert out["steady_step_s"] == pytest.approx(1.0)  # second halves only
    assert out["boundary_s"] == pytest.approx(3 - sum(inside) / len(inside))
    assert out["epoch_wall_s"] == pytest.approx(7.0) and out["intervals"] == len(inside)
    assert steady_steps([1.0], [2.0], warm=1) == {}


def test_projection_uses_the_epoch_wall_time_only_when_the_stand_in_has_the_real_epoch():
    run = {"step_s": 0.6, "steady_step_s": 0.5, "boundary_s": 2.0, "epoch_wall_s": 8.0}
    results = {"images_per_step": 100, "steps_per_epoch": 10, "run": run,
               "evaluation": {"images_per_s": 100.0, "cam_extra_s_per_image": 0.002}}
    cub = project(Recipe("cub", "cub_run", 1000, 500), load_config("cub"), results)
    assert (cub["epochs"], cub["evaluations"], cub["epoch_s"]) == (30, 5, 8.0)  # epochs 26 to 30, as the official
    assert cub["total_s"] == pytest.approx(30 * 8.0 + 5 * 5.0 + 500 * 0.002)  # CAM scoring in the last one only
    imagenet = project(Recipe("imagenet", "imagenet_run", 100_000, 1000),
                                 load_config("imagenet"), results)
    assert imagenet["steps_per_epoch"] == 1000 and imagenet["epoch_s"] == pytest.approx(1000 * 0.5 + 2.0)
    assert imagenet["total_s"] == pytest.approx(502.0 + 10.0 + 1000 * 0.002)


def test_targets_compare_each_value_with_its_goal():
    report = {"sections": {
        "model": {"results": {"ratios": {"bf16_compile_speedup_vs_fp32": 3.2, "bf16_compile_memory_vs_fp32": 0.7,
                                         "sat_time_vs_deit": 1.05},
                              "configs": {"SAT sdpa bf16": {"images_per_s": 4000.0},
                                          "SAT sdpa bf16 + compile": {"images_per_s": 5200.0},
                                          "DeiT-S bf16 (timm)": {"images_per_s": 9000.0}}}},
        "train_cub": {"results": {"loader_only_images_per_s": 2000.0, "model_only_images_per_s": 4000.0}}}}
    met = {t["target"]: (t["value"], t["met"]) for t in targets(report)}
    assert met["bf16 + compile images/s over explicit fp32"] == (3.2, True)
    assert met["bf16 + compile peak memory over explicit fp32"] == (0.7, False)
    assert met["SAT bf16 step time over timm DeiT-S bf16"] == (1.05, True)
    assert met["SAT DeiT-S images/s (best SAT path)"] == (5200.0, True)
    assert met["evaluator speed-up over the per-image loop (sat, 100 thresholds)"] == (None, None)
    assert met["loader images/s over model images/s (CUB)"] == (0.5, False)


def test_profile_summary_reads_kernels_syncs_and_copies_per_step():
    from types import SimpleNamespace

    def event(name, calls, device_us=0.0, cpu_us=0.0, kernel=False):
        kind = torch.autograd.DeviceType.CUDA if kernel else torch.autograd.DeviceType.CPU
        return SimpleNamespace(key=name, count=calls, self_device_time_total=device_us, self_cpu_time_total=cpu_us,
                               device_type=kind)

    events = [event("sm90_xmma_gemm_bf16bf16_bf16f32", 10, 600.0, kernel=True),
              event("flash_fwd_kernel", 5, 200.0, kernel=True),
              event("Memcpy HtoD (Pageable -> Device)", 2, 50.0, kernel=True),
              event("void at::native::vectorized_elementwise_kernel<4>", 20, 150.0, kernel=True),
              event("aten::mm", 10, 600.0, 100.0), event("aten::add", 20, 150.0, 300.0),
              event("aten::_local_scalar_dense", 3, cpu_us=5.0), event("cudaStreamSynchronize", 4, cpu_us=900.0),
              event("cudaLaunchKernel", 35, cpu_us=70.0)]
    out = summarize_profile(events, steps=2, wall_s=0.002, cuda=True)
    assert out["kernel_ms"] == pytest.approx(0.5) and out["gpu_busy"] == pytest.approx(0.5)
    assert out["kernel_share"] == pytest.approx({"matmul": 0.6, "attention": 0.2, "elementwise": 0.15, "copy": 0.05})
    assert (out["host_syncs"], out["pageable_copies"], out["launches"]) == (2.0, 1.0, 17.5)
    assert out["maybe_sync_ops"] == {"aten::_local_scalar_dense": 1.5, "cudaStreamSynchronize": 2.0}
    assert [op["name"] for op in out["top_ops"]] == ["aten::mm", "aten::add", "aten::_local_scalar_dense"]
    assert out["top_ops"][0]["self_device_ms"] == pytest.approx(0.3) and out["top_kernels"][0]["calls"] == 5
    on_cpu = summarize_profile(events[4:], steps=1, wall_s=0.01, cuda=False)
    assert on_cpu["gpu_busy"] is None and on_cpu["top_ops"][0]["name"] == "aten::add"  # by self CPU time
