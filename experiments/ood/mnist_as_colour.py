"""Write MNIST test digits as RGB PNG files, for `lvae evaluate --ood-dataset image_folder`
with a colour model (issue 32): `photo_tiles` (in) against digits (out).

    python experiments/ood/mnist_as_colour.py DIR --count 2290

The digits are padded with 2 black pixels on each side to 32 x 32 (as LeNet-5 took them;
`image_folder` never enlarges an image) and their grey levels go to all three channels. A
folder of N images holds out N / 10 for test: 2,290 give 229 test digits, as many as the
photo_patches test tiles. The digits are a seeded random draw.
"""

import argparse
import os

import numpy as np
from PIL import Image

from keras_lvae import data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=2290)
    parser.add_argument("--data-dir", default=os.environ.get(data.DATA_DIR_ENV))
    args = parser.parse_args()
    grey, _ = data.load_arrays("mnist", "test", data_dir=args.data_dir)
    chosen = np.random.default_rng(0).choice(len(grey), args.count, replace=False)
    os.makedirs(args.folder, exist_ok=True)
    for i, index in enumerate(chosen):
        pixels = np.pad(np.round(grey[index] * 255).astype(np.uint8), 2)
        Image.fromarray(pixels).convert("RGB").save(os.path.join(args.folder, f"{i:05d}.png"))
    print(f"wrote {args.count} digits to {args.folder}")


if __name__ == "__main__":
    main()
