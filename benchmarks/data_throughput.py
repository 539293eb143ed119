"""Images per second of the training pipelines: MNIST in memory, or an image folder streamed.

MNIST: reads the 60,000 MNIST training images from KERAS_LVAE_DATA_DIR (or --data-dir),
builds `load_dataset("mnist", "train", batch_size=256)` and times full epochs
after a first one that fills the cache. Target: at least 10x the model's
training throughput, about 100,000 images/s on a 2-core machine.

    python benchmarks/data_throughput.py --data-dir ../shared/data --epochs 5

Image folder (issue 35): writes --count PNGs of --side x --side noise into --image-folder
(once; kept for the next run), then prints the time to list the train split (names and
headers), the time to the first batch of the resumable epoch stream `lvae train` uses, the
images/s of whole epochs (decode, crop, area resize to --image-size, batch) and the process's
peak memory. Run it at two counts to see that memory does not grow with the number of images:

    python benchmarks/data_throughput.py --image-folder /tmp/folder_200k --count 200000
"""

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_lvae import data  # noqa: E402


def write_folder(folder, count, side):
    """`count` PNG files of noise (seeded), written only if the folder has fewer."""
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    have = sum(name.endswith(".png") for name in os.listdir(folder))
    if have >= count:
        return
    start, rng = time.perf_counter(), np.random.default_rng(0)
    for i in range(have, count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:07d}.png"))
    print(f"wrote {count - have:,} PNGs in {time.perf_counter() - start:.0f} s")


def peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def image_folder(args):
    from keras_lvae import image_files

    write_folder(args.image_folder, args.count, args.side)
    start = time.perf_counter()
    listing = image_files.list_split(args.image_folder, "train", args.image_size)
    print(f"listing {len(listing.paths):,} train images (names, headers): "
          f"{time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    ds = data.load_dataset("image_folder", "train", batch_size=args.batch_size,
                           data_dir=args.image_folder, image_size=args.image_size,
                           epochs=(0, args.epochs))
    batches = iter(ds)
    images = int(next(batches).shape[0])
    print(f"first batch after {time.perf_counter() - start:.1f} s (listing included)")
    per_epoch = -(-len(listing.paths) // args.batch_size)
    rates, start, seen = [], time.perf_counter(), 1
    for batch in batches:
        images += int(batch.shape[0])
        seen += 1
        if seen % per_epoch == 0:
            rates.append(images / (time.perf_counter() - start))
            start, images = time.perf_counter(), 0
    print(f"{args.count:,} PNGs of {args.side} x {args.side} -> {args.image_size} x "
          f"{args.image_size}, batch {args.batch_size}: epochs "
          + ", ".join(f"{r:,.0f}" for r in rates)
          + f"  median: {statistics.median(rates):,.0f} images/s; peak memory "
          f"{peak_gib():.2f} GiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_ENV))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-folder", default=None, help="time a streamed image folder")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--side", type=int, default=48)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    if args.image_folder:
        return image_folder(args)
    ds = data.load_dataset("mnist", "train", batch_size=args.batch_size, data_dir=args.data_dir)
    for _ in ds:  # first epoch: fill the cache
        pass
    rates = []
    for _ in range(args.epochs):
        start, images = time.perf_counter(), 0
        for batch in ds:
            images += int(batch.shape[0])
        rates.append(images / (time.perf_counter() - start))
    print(f"MNIST train, batch {args.batch_size}, dynamic binarization: runs "
          + ", ".join(f"{r:,.0f}" for r in rates)
          + f"  median: {statistics.median(rates):,.0f} images/s")


if __name__ == "__main__":
    main()
