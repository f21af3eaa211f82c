"""The GPU suite that `bench/gpu_suite.py` runs, in parts.

    harness.py           sizes, the shared `Suite` state, sections run under time caps, timing helpers
    recipes.py           the paper recipes (CUB, ImageNet) as the training sections run them
    sections/            one module per section: env, model, evaluator ("eval"), data, training
                         ("train_cub", "train_imagenet"), profiling ("profile")
    profile_analysis.py  torch.profiler events -> per-step figures (kernels, syncs, launches)
    report.py            targets, what limits the missed ones, report.md and the closing summary

Imported as `suite` with bench/ on sys.path, as the bench scripts import `_common`.
"""
