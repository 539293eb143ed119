"""The house's map (docs/architecture.md) against the code: every module named, imports only
of the module's own layer or the layers below, and no import circle (imports inside
functions count too)."""

import ast
import re

from tests.conftest import REPO

PACKAGE = REPO / "keras_lvae"
# The layers of docs/architecture.md, bottom (1) to top (6).
LAYERS = {
    1: ["_checks", "_compat", "_files", "distributions", "densities", "logistic_mixture",
        "objectives", "schedules", "inputs", "threads"],
    2: ["layers", "layers._normalization", "layers.conv_rung", "layers.ladder_merge",
        "layers.mlp_block", "layers.stochastic_gaussian", "likelihoods", "weight_average",
        "update_skipping", "optimizers"],
    3: ["models", "models.ladder_vae", "models._passes", "models._bounds", "models._generation",
        "models._trainer", "models._arguments", "models.conv_ladder_vae"],
    4: ["readers", "image_files", "pipelines", "data", "evaluation_data"],
    5: ["evaluation", "report_statistics", "diagnostics", "batch_norm_statistics", "ood",
        "classification", "plots", "export", "saved_model_client", "portable"],
    6: ["config", "checkpoints", "callbacks", "training", "tuning", "command_inputs",
        "commands", "evaluate_command", "ood_evaluation", "__init__"],
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def module_names():
    """Every module of the package, dotted below keras_lvae (packages by their own name)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "recipes" in path.parts:
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        names.append(".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1
                     else ".".join(parts))
    return names


def imports_of(name):
    """The package modules that module `name` imports, anywhere in its code."""
    path = (PACKAGE / name.replace(".", "/")).with_suffix(".py")
    if not path.exists():
        path = PACKAGE / name.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "keras_lvae" or node.module.startswith("keras_lvae.")):
            base = node.module[len("keras_lvae."):] if node.module != "keras_lvae" else ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}".strip(".")
                found.add(candidate if candidate in LAYER_OF else base or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_lvae."):
                    found.add(alias.name[len("keras_lvae."):])
    found.discard(name)
    return {module for module in found if module}


def test_every_module_is_on_the_map_and_in_a_layer():
    text = (REPO / "docs" / "architecture.md").read_text()
    for name in module_names():
        file = name.replace(".", "/") + (".py" if name not in ("layers", "models") else "/")
        leaf = name.split(".")[-1]
        assert f"`{leaf}.py`" in text or f"`{file}" in text or f"`{name}/" in text or (
            name in ("layers", "models") and f"`{name}/" in text), f"{name} is not on the map"
        assert name in LAYER_OF, f"{name} has no layer in this test"


def test_modules_import_only_their_layer_and_the_layers_below():
    wrong = [f"{name} (layer {LAYER_OF[name]}) imports {imported} (layer {LAYER_OF[imported]})"
             for name in module_names() for imported in imports_of(name)
             if imported in LAYER_OF and LAYER_OF[imported] > LAYER_OF[name]]
    assert not wrong, "\n".join(wrong)


def test_no_import_circle():
    graph = {name: imports_of(name) & set(LAYER_OF) for name in module_names()}
    graph.pop("__init__", None)  # the package's names: imports everything, imported by none
    for edges in graph.values():
        edges.discard("__init__")
    visiting, done = [], set()

    def visit(name):
        if name in done:
            return
        assert name not in visiting, "import circle: " + " -> ".join(
            visiting[visiting.index(name):] + [name])
        visiting.append(name)
        for imported in sorted(graph.get(name, ())):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_readme_links_the_map():
    assert re.search(r"\(docs/architecture\.md\)", (REPO / "README.md").read_text())
