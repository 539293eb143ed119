import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
# Real benchmark data (never downloaded): KERAS_LVAE_DATA_DIR, else ../shared/data
# beside the checkout, which is where CI puts it.
SHARED_DATA = pathlib.Path(os.environ.get("KERAS_LVAE_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mnist_dir():
    path = SHARED_DATA / "mnist"
    if not (path / "train-images-idx3-ubyte.gz").exists():
        if os.environ.get("CI"):
            pytest.fail(f"MNIST IDX files not found in {path}; CI must provide shared/data")
        pytest.skip(f"MNIST IDX files not found in {path} (set KERAS_LVAE_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def binarized_mnist_dir():
    """The folder that holds Larochelle's static binarized MNIST."""
    path = SHARED_DATA / "binarized_mnist"
    if not (path / "binarized_mnist_packbits.npz").exists():
        if os.environ.get("CI"):
            pytest.fail(f"binarized MNIST not found in {path}; CI must provide shared/data")
        pytest.skip(f"binarized MNIST not found in {path} (set KERAS_LVAE_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same global seeds (Python, numpy, TensorFlow/Keras), so a
    test's outcome does not depend on the tests that ran before it."""
    import keras

    keras.utils.set_random_seed(0)
