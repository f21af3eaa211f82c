"""Compile ahead what the suite would otherwise compile inside a timed section, in a process of its own.

    python bench/suite/warm.py numba             # the evaluator's numba kernels, into NUMBA_CACHE_DIR
    python bench/suite/warm.py numba inductor    # ... and the model section's compiled step (CUDA)

numba caches its kernels on disk (`cache=True`; NUMBA_CACHE_DIR, default beside the sources), and
inductor its graphs and Triton kernels (TORCHINDUCTOR_CACHE_DIR, default under /tmp): a later process
on the same machine that compiles the same thing loads it instead (numba's entries are keyed by the
CPU and filed by the sources' folder, so a cache made on another machine is not used). A cold numba
compile of the trees takes about a minute on an idle core (several on a busy 2-core machine), the
compiled DeiT-S step one or two; the suite
starts the numba warm-up when it starts, and bench/gpu_check.sh runs both while `pytest -m gpu` runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def warm_numba() -> None:
    """A tiny evaluation of each protocol on CPU maps: compiles (or loads) every numba kernel the evaluator has."""
    from satlib.evaluation import LocalizationEvaluator

    maps = torch.rand(2, 14, 14)
    boxes = [torch.tensor([[4.0, 4.0, 30.0, 30.0]])] * 2
    for protocol in ("sat", "wsoleval"):
        LocalizationEvaluator(image_size=56, protocol=protocol, backend="union_find").update(maps, boxes)


def warm_inductor() -> None:
    """The model section's compiled configuration, two steps on CUDA (its graphs and kernels into the caches)."""
    if not torch.cuda.is_available():
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import bench_model
    from suite.harness import Sizes, Suite
    from suite.sections.model import MODEL_COMPILED, model_args

    suite = Suite(sizes=Sizes(), device=torch.device("cuda"), out=Path("."), work=Path("."))
    runner = bench_model.Runner(model_args(suite, suite.sizes.model_batch, suite.sizes.cub_classes), MODEL_COMPILED)
    for _ in range(2):
        runner.step()
    torch.cuda.synchronize()


WARM = {"numba": warm_numba, "inductor": warm_inductor}

if __name__ == "__main__":
    for name in sys.argv[1:] or ["numba"]:
        WARM[name]()
        print(f"warm: {name} ready", flush=True)
