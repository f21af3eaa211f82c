"""The report: each target with its value, what limits the missed ones, report.md and the closing summary."""

from __future__ import annotations

import timm
import torch

import satlib

from _common import fmt, ratio


def results_of(report: dict, name: str) -> dict:
    return report.get("sections", {}).get(name, {}).get("results", {})


def targets(report: dict) -> list[dict]:
    """Each target of issue 8 with its measured value (None when its section did not produce it)."""
    model, evaluation, cub = (results_of(report, n) for n in ("model", "eval", "train_cub"))
    ratios, configs = model.get("ratios", {}), model.get("configs", {})
    sat_rates = [row["images_per_s"] for label, row in configs.items() if label.startswith("SAT sdpa")]
    loader = ratio(cub.get("loader_only_images_per_s"), cub.get("model_only_images_per_s"))
    rows = [
        ("bf16 + compile images/s over explicit fp32", ratios.get("bf16_compile_speedup_vs_fp32"), ">= 3", 3, 1),
        ("bf16 + compile peak memory over explicit fp32", ratios.get("bf16_compile_memory_vs_fp32"), "<= 0.6", 0.6, -1),
        ("SAT bf16 step time over timm DeiT-S bf16", ratios.get("sat_time_vs_deit"), "<= 1.10", 1.10, -1),
        ("SAT DeiT-S images/s (best SAT path)", max(sat_rates) if sat_rates else None, ">= 5000 on an H100", 5000, 1),
        ("evaluator speed-up over the per-image loop (sat, 100 thresholds)",
         _sat_row(evaluation, 100).get("speedup"), ">= 100", 100, 1),
        ("loader images/s over model images/s (CUB)", loader, ">= 1", 1, 1),
    ]
    return [{"target": name, "value": value, "goal": goal,
             "met": None if value is None else bool((value - bound) * sign >= 0)}
            for name, value, goal, bound, sign in rows]


def _sat_row(evaluation: dict, thresholds: int) -> dict:
    """The eval section's SAT row at `thresholds` thresholds ({} when it did not run)."""
    rows = evaluation.get("rows", {}).values()
    return next((r for r in rows if r.get("protocol") == "sat" and r.get("thresholds") == thresholds), {})


def limits(report: dict) -> list[str]:
    """For every missed target, what limits it, read off the measurements and the profile."""
    missed = {t["target"] for t in report.get("targets", []) if t["met"] is False}
    env, model, cub = (results_of(report, n) for n in ("env", "model", "train_cub"))
    profile = results_of(report, "profile")
    notes = []
    step = profile.get("train_step")
    if missed & {"bf16 + compile images/s over explicit fp32", "SAT DeiT-S images/s (best SAT path)",
                 "SAT bf16 step time over timm DeiT-S bf16"} and model.get("configs"):
        best = max((r for label, r in model["configs"].items() if label.startswith("SAT")), key=lambda r: r["tflops"])
        ceiling = env.get("matmul_bf16_tflops")
        text = f"Model: the best SAT path reaches {best['tflops']:.3g} TFLOP/s"
        if ceiling:
            text += f", {100 * best['tflops'] / ceiling:.0f}% of the measured bf16 matmul ceiling ({ceiling:.0f})"
        if step:
            text += (f". Training-step profile: kernels fill {fmt(pct(step['gpu_busy']), '.0f')}% of the step's "
                     f"wall time; kernel time by kind: {shares_text(step['kernel_share'])}; per step "
                     f"{step['host_syncs']:.0f} host syncs, {step['pageable_copies']:.0f} pageable copies, "
                     f"{step['launches']:.0f} kernel launches; top op {top_op(step)}")
        flops = model.get("gflop_per_image", {})
        if flops.get("deit"):
            text += (f". SAT costs {flops['sat']:.1f} GFLOP per image forward+backward, "
                     f"{100 * (flops['sat'] / flops['deit'] - 1):+.0f}% over plain DeiT-S (conv head, loc token)")
        notes.append(text + ".")
    if "bf16 + compile peak memory over explicit fp32" in missed and model.get("configs"):
        peaks = ", ".join(f"{label} {fmt(r['peak_mb'], '.0f')} MiB" for label, r in model["configs"].items())
        notes.append(f"Memory: peak above the resident weights per configuration: {peaks}.")
    batch = profile.get("eval_batch")
    if "evaluator speed-up over the per-image loop (sat, 100 thresholds)" in missed and batch:
        notes.append(f"Evaluator: one batch of {batch['maps']} maps x {batch['thresholds']} thresholds takes "
                     f"{batch['wall_ms']:.0f} ms, kernels {batch['kernel_ms']:.0f} ms "
                     f"({shares_text(batch['kernel_share'])}); {batch['host_syncs']:.0f} host syncs and "
                     f"{batch['launches']:.0f} launches per batch; top op {top_op(batch)}.")
    if "loader images/s over model images/s (CUB)" in missed and cub:
        notes.append(f"Loader: the CUB train loader alone gives {cub['loader_only_images_per_s']:.0f} images/s with "
                     f"{cub.get('workers')} workers, the model alone {cub['model_only_images_per_s']:.0f}; the loop "
                     f"runs at {fmt(cub.get('images_per_s'), '.0f')} images/s, so the input pipeline (JPEG decode + "
                     f"resize on the CPU workers) limits training; see the data section for more workers and "
                     f"nvJPEG decoding.")
    return notes


def pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def shares_text(shares: dict) -> str:
    return ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in list(shares.items())[:5]) or "no kernels"


def top_op(summary: dict) -> str:
    if not summary.get("top_ops"):
        return "n/a"
    op = summary["top_ops"][0]
    return f"{op['name']} ({op['self_device_ms'] or op['self_cpu_ms']:.1f} ms, {op['calls']:.0f} calls)"


def table(header: list[str], rows: list[list]) -> list[str]:
    cells = lambda row: "| " + " | ".join(str(c) for c in row) + " |"  # noqa: E731
    return [cells(header), "|" + "---|" * len(header), *(cells(r) for r in rows)]


def render_markdown(report: dict) -> str:
    """report.md: header, targets, projections, one part per section, limits."""
    suite, sections = report.get("suite", {}), report.get("sections", {})
    env = results_of(report, "env")
    lines = ["# GPU suite report", "",
             f"- device: {env.get('device', 'n/a')}; torch {torch.__version__}, timm {timm.__version__}, "
             f"satlib {satlib.__version__}, commit {env.get('git') or 'n/a'}",
             f"- command: `{suite.get('command', '')}`",
             f"- started {suite.get('started', '')}, {suite.get('elapsed_s', 0):.0f} s so far"
             f"{' (smoke: tiny sizes on the CPU, figures are not measurements)' if suite.get('smoke') else ''}", ""]
    lines += ["## Targets", ""] + table(["target", "value", "goal", "met"], [
        [t["target"], fmt(t["value"], ".2f"), t["goal"], {True: "yes", False: "**no**", None: "n/a"}[t["met"]]]
        for t in report.get("targets", [])]) + [""]
    lines += ["## Projected time to reproduce each paper number on one GPU", ""] + table(
        ["setting", "steps/epoch x epochs", "epoch", "evaluations", "total"],
        [[name, f"{p['steps_per_epoch']} x {p['epochs']}", f"{p['epoch_s']:.0f} s",
          f"{p['evaluations']} x {fmt(p['eval_s'], '.0f')} s", f"{p['total_s'] / 60:.1f} min"]
         for name, p in ((n, results_of(report, s).get("projection")) for n, s in
                         (("CUB, 30 epochs", "train_cub"), ("ImageNet, 1 epoch", "train_imagenet"))) if p]) + [""]
    lines += ["## Sections", ""] + table(["section", "status", "seconds", "cap"], [
        [name, e["status"], fmt(e.get("seconds"), ".0f"), fmt(e.get("cap_s"), ".0f")] for name, e in sections.items()])
    for name, entry in sections.items():
        lines += ["", f"### {name}", ""]
        if entry.get("error"):
            lines += [f"**{entry['status']}**: {entry['error']}", ""]
        lines += RENDER.get(name, lambda r: [])(entry.get("results", {}))
    if report.get("limits"):
        lines += ["", "## What limits the missed targets", ""] + [f"- {note}" for note in report["limits"]]
    return "\n".join(lines) + "\n"


def render_env(r: dict) -> list[str]:
    keys = ("device", "capability", "memory_gib", "multiprocessors", "cpus", "python", "torch", "cuda", "timm",
            "datasheet_bf16_tflops", "matmul_bf16_tflops", "matmul_fp32_tflops", "copy_tb_s")
    return table(["", "value"], [[k, fmt(r[k], ".3g") if isinstance(r[k], float) else r[k]] for k in keys if k in r])


def render_model(r: dict) -> list[str]:
    if not r.get("configs"):
        return []
    configs = r["configs"]
    lines = [f"{r['model']}, batch {r['batch']}, {r['img_size']} px, {r['classes']} classes; a step is "
             f"{r.get('step', 'forward + backward')}; forward+backward GFLOP/image: SAT "
             f"{r['gflop_per_image']['sat']:.2f}, DeiT {r['gflop_per_image']['deit']:.2f}", "",
             "Attention path x precision (images/s, peak MiB above the weights):", ""]
    grid = [[path] + [f"{fmt(configs.get(f'SAT {path} {d}', {}).get('images_per_s'), '.0f')} / "
                      f"{fmt(configs.get(f'SAT {path} {d}', {}).get('peak_mb'), '.0f')}" for d in ("fp32", "bf16")]
            for path in ("explicit", "sdpa")]
    lines += table(["attention", "fp32", "bf16"], grid) + [""]
    lines += table(["configuration", "ms/step", "images/s", "TFLOP/s", "peak MiB"], [
        [label, f"{c['ms_per_step']:.1f}", f"{c['images_per_s']:.0f}", f"{c['tflops']:.3g}", fmt(c["peak_mb"], ".0f")]
        for label, c in configs.items()])
    return lines + [""] + [f"- {k}: {fmt(v, '.2f')}" for k, v in r.get("ratios", {}).items()]


def render_eval(r: dict) -> list[str]:
    """One row per threshold sweep and device path (label propagation, the host path), side by side."""
    rows = []
    for name, x in r.get("rows", {}).items():
        for path, p in x.get("paths", {}).items():
            mark = " (faster)" if path == x.get("faster") else ""
            rows.append([name, path + mark, p.get("maps"), fmt(p.get("ms_per_map"), ".3f"),
                         fmt(p.get("cub_s"), ".1f"), fmt(p.get("imagenet_s"), ".0f"),
                         fmt(x.get("loop_ms_per_map"), ".2f"), fmt(p.get("speedup"), ".0f"),
                         fmt(p.get("peak_mb"), ".0f"), p.get("agrees_with_loop", x.get("loop", "n/a"))])
        for path, why in x.get("skipped", {}).items():
            rows.append([name, path, "-", "-", "-", "-", fmt(x.get("loop_ms_per_map"), ".2f"), "-", "-", why])
    head = [f"{r.get('maps')} maps 14x14 -> {r.get('side')}, batch {r.get('batch')}; each sweep's loop timed on "
            f"{r.get('loop_maps')} maps on the CPU and scaled", ""] if r else []
    return head + table(["sweep", "path", "maps run", "ms/map", "CUB-sized s", "ImageNet-sized s", "loop ms/map",
                         "speed-up", "peak MiB", "agrees with loop"], rows)


def render_data(r: dict) -> list[str]:
    head = [f"{r.get('images')} JPEGs {r.get('size')}, ~{fmt(r.get('mean_kb'), '.0f')} KB, made in "
            f"{fmt(r.get('seconds'), '.1f')} s", ""] if r else []
    return head + table(["workers", "decode", "batch", "images/s", "batches decoded on the CPU instead"], [
        [x["workers"], x["decode"], x["batch"], f"{x['images_per_s']:.0f}",
         (x.get("decode_fallbacks") or {}).get("batches", "n/a")] for x in r.get("loaders", [])])


def render_train(r: dict) -> list[str]:
    run_, ev, p = r.get("run", {}), r.get("evaluation", {}), r.get("projection", {})
    rows = [["batch (micro x accumulation)", f"{r.get('micro_batch')} x {r.get('grad_accum')}"],
            ["classes", r.get("classes")], ["steps run (epochs)", f"{run_.get('steps')} ({run_.get('epochs')})"],
            ["images/s in the training loop", fmt(r.get("images_per_s"), ".0f")],
            ["images/s, model alone (no loader)", fmt(r.get("model_only_images_per_s"), ".0f")],
            ["images/s, loader alone", f"{fmt(r.get('loader_only_images_per_s'), '.0f')} ({r.get('workers')} workers)"],
            ["loop / model alone", fmt(r.get("gpu_busy_estimate"), ".2f")],
            ["step time (all / second half of each epoch)",
             f"{fmt(1e3 * run_['step_s'] if 'step_s' in run_ else None, '.1f')} / "
             f"{fmt(1e3 * run_['steady_step_s'] if 'step_s' in run_ else None, '.1f')} ms"],
            ["epoch boundary (checkpoint, loader restart)", fmt(run_.get("boundary_s"), ".2f") + " s"],
            ["epoch wall time (this stand-in)", fmt(run_.get("epoch_wall_s"), ".1f") + " s"],
            ["start to first step (data, model, compile)", fmt(run_.get("first_step_s"), ".1f") + " s"],
            ["peak memory", fmt(run_.get("peak_mb"), ".0f") + " MiB"],
            ["evaluation", f"{fmt(ev.get('images_per_s'), '.0f')} images/s over {ev.get('images')} images"
                           f" (ten-crop {ev.get('tencrop')}, batch {ev.get('batch')}, {ev.get('backend')}); "
                           f"CAM scoring adds {fmt(1e3 * ev.get('cam_extra_s_per_image', 0.0), '.2f')} "
                           f"ms/image (closing evaluation only)"]]
    if p:
        rows += [["projected epoch", f"{p['steps_per_epoch']} steps, {p['epoch_s']:.0f} s ({p['basis']})"],
                 ["projected full run", f"{p['epochs']} epochs + {p['evaluations']} evaluations of "
                                        f"{p['eval_images']} images = {p['total_s'] / 60:.1f} min"]]
    return table(["figure", "value"], rows) if r else []


def render_profile(r: dict) -> list[str]:
    lines = []
    for name in ("train_step", "eval_batch"):
        x = r.get(name)
        if not x:
            continue
        lines += [f"{name}: {x['wall_ms']:.1f} ms wall per step under the profiler, {x['kernel_ms']:.1f} ms of "
                  f"kernels (busy {fmt(pct(x['gpu_busy']), '.0f')}%); {shares_text(x['kernel_share'])}; per step "
                  f"{x['host_syncs']:.0f} host syncs, {x['pageable_copies']:.0f} pageable copies, "
                  f"{x['launches']:.0f} launches; ops that sync when on the GPU {x['maybe_sync_ops']}; "
                  f"trace {x.get('trace')}", ""]
        lines += table(["op", "calls", "self device ms", "self CPU ms"], [
            [f"`{o['name']}`", f"{o['calls']:.0f}", f"{o['self_device_ms']:.2f}", f"{o['self_cpu_ms']:.2f}"]
            for o in x["top_ops"]]) + [""]
    return lines


RENDER = {"env": render_env, "model": render_model, "eval": render_eval, "data": render_data,
          "train_cub": render_train, "train_imagenet": render_train, "profile": render_profile}


def headline(name: str, r: dict) -> str:
    """One line per section for the final summary."""
    if name == "env" and r:
        return f"{r.get('device')}, copy {fmt(r.get('copy_tb_s'), '.2f')} TB/s"
    if name == "model" and r.get("configs"):
        return ", ".join(f"{label} {c['images_per_s']:.0f}/s" for label, c in r["configs"].items()
                         if label.startswith("SAT"))
    if name == "eval" and r.get("rows"):
        return ", ".join(f"{n}: {x['faster']} {fmt(x.get('speedup'), '.0f')}x" for n, x in r["rows"].items())
    if name == "data" and r.get("loaders"):
        return ", ".join(f"{x['workers']}w/{x['decode']} {x['images_per_s']:.0f}/s" for x in r["loaders"])
    if name.startswith("train") and r.get("run"):
        p = r.get("projection", {})
        return (f"{fmt(r.get('images_per_s'), '.0f')} img/s in loop, "
                f"model {fmt(r.get('model_only_images_per_s'), '.0f')}, "
                f"loader {fmt(r.get('loader_only_images_per_s'), '.0f')}; full run {fmt(p.get('total_h'), '.2f')} h")
    if name == "profile" and r:
        return ", ".join(f"{k} busy {fmt(pct(v.get('gpu_busy')), '.0f')}% syncs {v['host_syncs']:.0f}"
                         for k, v in r.items())
    return ""


def print_summary(report: dict) -> None:
    print("\n== summary")
    for name, e in report["sections"].items():
        print(f"{name:<15} {e['status']:<8} {fmt(e.get('seconds'), '6.0f')} s  {headline(name, e.get('results', {}))}")
    print()
    for t in report.get("targets", []):
        met = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        print(f"{t['target']:<50} {fmt(t['value'], '10.2f')}  {t['goal']:<20} {met}")
    for note in report.get("limits", []):
        print(f"- {note}")
