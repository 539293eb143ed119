"""The README's Python examples run as written; its shell commands are the ones CI runs."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # over 10 s
def test_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # it saves lvae.keras in the working directory
    namespace = {}
    for block in blocks:  # later blocks continue from the first one's variables
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["images"].shape == (16, 28, 28, 1)
    assert namespace["bound"].shape == (500,)
    assert (tmp_path / "lvae.keras").exists() and (tmp_path / "kl_per_unit.png").exists()
    assert namespace["report"]["num_samples"] == 100
    assert namespace["model"].optimizer.iterations.numpy() == 2  # the fine-tuning steps
    assert namespace["conv"].latent_shapes == [(8, 8, 32), (4, 4, 32), (2, 2, 32)]
    assert namespace["sevens"].shape == (16, 28, 28, 1)
    assert namespace["p_y_given_x"].shape == (100, 10)


def test_each_python_block_runs_on_its_own_or_says_what_it_continues():
    """A reader who copies one block: it starts with its imports, or its first line says it
    continues the example above."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    for block in blocks[1:]:
        first = block.splitlines()[0]
        assert first.startswith("import ") or first == "# continues the example above", first


def test_commands_match_ci():
    """Every `lvae` command and the test command in the README's shell blocks is a line
    .ci/run executes, as written."""
    text = README.read_text()
    ci_lines = (README.parent / ".ci" / "run").read_text().splitlines()
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S))
    # The two-worker launch lines (TF_CONFIG=...) are run by test_distribute instead.
    commands = [re.search(r"lvae \w+.*", line).group(0) for line in shell.splitlines()
                if re.search(r"(^|&& )lvae ", line)]
    assert len(commands) >= 2, commands
    for command in [*commands, "python -m pytest"]:
        assert command in ci_lines, command
    assert 'pip install -c constraints.txt -e ".[dev]"' in shell
    assert any('-c constraints.txt -e ".[dev]"' in line for line in ci_lines)
