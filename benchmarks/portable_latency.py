"""Latency of `decode` and `encode` in TensorFlow, onnxruntime and LiteRT, and export sizes.

For the paper's 5-layer MNIST ladder and the `own_images` recipe's conv ladder (32 x 32
colour, logistic mixture), both with their initial weights (latency does not depend on
the values): exports ONNX and LiteRT (`keras_lvae.export_model`) into a temporary folder,
then times each function at batch 1 and 100 in each runtime with one thread (the
TensorFlow side: the same traced function the exports were made from). Prints the median
of --runs calls after 3 warm-up calls, in milliseconds, and the files' sizes.

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 0 \\
        python benchmarks/portable_latency.py --runs 50
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_lvae  # noqa: E402
from keras_lvae import portable  # noqa: E402


def models():
    paper = keras_lvae.LadderVAE(seed=1)
    paper(np.zeros((1, 28, 28, 1), np.float32))
    conv = keras_lvae.ConvLadderVAE(
        latent_dims=(16, 16), hidden_dims=(32, 32), residual_blocks=2, downsample=(2, 1),
        activation="swish", skip=True, likelihood="logistic_mixture", mixture_components=5,
        seed=1)
    conv(np.zeros((1, 32, 32, 3), np.float32))
    return {"paper MLP, 28x28": paper, "own_images conv, 32x32x3": conv}


def median_ms(call, runs):
    for _ in range(3):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def main():
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    rng = np.random.default_rng(0)
    folder = tempfile.mkdtemp()
    for title, model in models().items():
        key = title.split()[0]
        onnx_dir = portable.export_model(model, os.path.join(folder, f"{key}.onnx"), "onnx")
        tflite = portable.export_model(model, os.path.join(folder, f"{key}.tflite"), "litert")
        litert = Interpreter(model_path=tflite, num_threads=1)
        functions = portable.portable_functions(model)
        print(f"{title}: ONNX {size(onnx_dir) / 1e6:.1f} MB (4 graphs), LiteRT "
              f"{size(tflite) / 1e6:.1f} MB")
        print("| function | batch | TensorFlow | onnxruntime | LiteRT |")
        print("|---|---|---|---|---|")
        for name in ("decode", "encode"):
            function, (spec,) = functions[name]
            session = onnxruntime.InferenceSession(os.path.join(onnx_dir, f"{name}.onnx"),
                                                   options)
            runner = litert.get_signature_runner(name)
            for batch in (1, 100):
                if spec.dtype.name == "uint8":
                    x = rng.integers(0, 256, (batch, *spec.shape[1:])).astype(np.uint8)
                else:
                    x = rng.random((batch, *spec.shape[1:])).astype(np.float32)
                feed = {spec.name: x}
                times = [median_ms(lambda: function(x), args.runs),
                         median_ms(lambda: session.run(None, feed), args.runs),
                         median_ms(lambda: runner(**feed), args.runs)]
                print(f"| {name} | {batch} | " + " | ".join(f"{t:.2f} ms" for t in times) + " |")


if __name__ == "__main__":
    main()
