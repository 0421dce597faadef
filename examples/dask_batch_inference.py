"""Batch inference over a dataset with Dask: a quantized model shipped to the workers as
``npquant.save`` bytes, mapped over the dataset's partitions.

The model is the int8 digits CNN of ``npquant demo`` (bundled weights, calibrated here);
the dataset its bundled test images. The workers receive the model as the bytes of
``npquant.interop.model_to_bytes`` (a zip of .npy arrays and a JSON manifest: no pickled
objects, no code), broadcast once with ``client.scatter``; each partition runs
``npquant.interop.run_model_bytes``, which loads the model once per worker process
(weights packed for that worker's CPU) and keeps it. The distributed result equals a
single-process run bit for bit: npquant's kernels are exact on every CPU, so neither
the partitioning nor the workers' ISAs change an output.

Needs ``pip install "dask[distributed]"`` and an installed npquant:

    python examples/dask_batch_inference.py [--workers 2] [--chunk 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from npquant.interop import model_to_bytes, run_model_bytes


def quantized_digits_model():
    """The demo's int8 digits CNN and the test images it classifies."""
    from npquant.data import load_digits
    from npquant.demo import quantize_digits
    from npquant.models.digits import digits_cnn

    data = load_digits()
    model = quantize_digits(digits_cnn(), data["calib_x"], show_progress=False)
    return model, data["test_x"], data["test_y"]


def distributed_predict(
    blob: bytes, x: np.ndarray, n_workers: int = 2, chunk: int = 128, processes: bool = True
) -> np.ndarray:
    """The model in blob run on x over a local Dask cluster, one partition of `chunk`
    images per task; returns the (N, classes) float32 outputs."""
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        model_on_workers = client.scatter(blob, broadcast=True)  # sent once, not per task
        n_classes = run_model_bytes(x[:1], blob).shape[1]
        data = da.from_array(x, chunks=(chunk,) + x.shape[1:])
        out = data.map_blocks(
            run_model_bytes,
            model_on_workers,
            dtype=np.float32,
            chunks=(chunk, n_classes),
            drop_axis=list(range(2, x.ndim)),
        )
        return out.compute()


def run(n_workers: int = 2, chunk: int = 128, processes: bool = True) -> dict:
    model, x, y = quantized_digits_model()
    blob = model_to_bytes(model)
    t = time.perf_counter()
    single = model(x)
    t_single = time.perf_counter() - t
    t = time.perf_counter()
    dist = distributed_predict(blob, x, n_workers, chunk, processes)
    t_dist = time.perf_counter() - t
    return {
        "images": len(x),
        "model_bytes": len(blob),
        "identical": bool(np.array_equal(dist, single)),
        "accuracy": float(np.mean(dist.argmax(1) == y)),
        "single_s": t_single,
        "dask_s": t_dist,
        "single": single,
        "dask": dist,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=128, help="images per partition")
    args = ap.parse_args()
    r = run(args.workers, args.chunk)
    print(f"{r['images']} images, model {r['model_bytes']:,} bytes, {args.workers} workers, partitions of {args.chunk}")
    print(f"accuracy {r['accuracy']:.4f}; outputs identical to one process: {r['identical']}")
    print(f"one process {r['single_s']:.3f} s; Dask (cluster start-up included) {r['dask_s']:.3f} s")
    if not r["identical"]:
        raise SystemExit("the distributed outputs differ from the single-process run")


if __name__ == "__main__":
    main()
