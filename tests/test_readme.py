"""The README's Python example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # it saves lvae.keras in the working directory
    namespace = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert namespace["images"].shape == (16, 28, 28, 1)
    assert namespace["bound"].shape == (500,)
    assert (tmp_path / "lvae.keras").exists()


def test_commands_match_ci():
    """The two shell commands the README gives are the ones .ci/run executes."""
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "lvae train --dataset mnist_5k --epochs 10" in text and \
        "lvae train --dataset mnist_5k --epochs 10" in ci
    assert "python -m pytest" in text and "python -m pytest" in ci
