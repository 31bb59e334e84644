"""Dependencies point one way: no import cycle among the project's modules, and no module
uses another module's private names. Read from the source (AST), function-level imports
included."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("tf_fastgrnn", "data", "pipelines")


def _modules():
  mods = {}
  for package in PACKAGES:
    for path in sorted((REPO / package).glob("*.py")):
      name = package if path.stem == "__init__" else f"{package}.{path.stem}"
      mods[name] = ast.parse(path.read_text(), str(path))
  return mods


def _imports(name, tree, mods):
  """Project modules ``name`` imports anywhere in its body, and the local aliases."""
  package = name if name in PACKAGES else name.rsplit(".", 1)[0]
  found, aliases = set(), {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name in mods:
          found.add(a.name)
          aliases[a.asname or a.name] = a.name
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = package + ("." + base if base else "")
      for a in node.names:
        target = f"{base}.{a.name}"
        if target in mods:
          found.add(target)
          aliases[a.asname or a.name] = target
        elif base in mods:
          found.add(base)
  found.discard(name)
  # A package's __init__ importing its own submodules is not a dependency cycle.
  return found, aliases


def _graph():
  mods = _modules()
  return mods, {n: _imports(n, t, mods) for n, t in mods.items()}


def _cycles(edges):
  """Every strongly connected component with more than one module (Tarjan)."""
  index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  return out


def test_cycle_finder_finds_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
  _, graph = _graph()
  # Packages' __init__ files re-export their submodules: edges out of them are fine, and
  # "import data" from a module means the package's public API, not a submodule.
  edges = {n: {t for t in found if t not in PACKAGES} for n, (found, _) in graph.items()
           if n not in PACKAGES}
  assert _cycles(edges) == []


def test_the_product_imports_neither_the_clis_nor_the_data_loaders():
  """tf_fastgrnn (compress, deploy, run_folder, ...) stands alone: pipelines and data
  build on it, never the reverse."""
  _, graph = _graph()
  uses = sorted(f"{name} imports {target}" for name, (found, _) in graph.items()
                if name.split(".")[0] == "tf_fastgrnn" for target in found
                if target.split(".")[0] in ("pipelines", "data"))
  assert uses == []


def test_export_does_not_import_quantization():
  _, graph = _graph()
  assert "tf_fastgrnn.quantization" not in graph["tf_fastgrnn.export"][0]


def test_no_use_of_another_modules_private_names():
  mods, graph = _graph()
  uses = []
  for name, tree in mods.items():
    aliases = graph[name][1]
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
          and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
          and node.value.id in aliases and aliases[node.value.id] != name):
        uses.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
  assert uses == []


def test_tfmot_compat_refuses_another_tfmot_version():
  import pytest  # pylint: disable=import-outside-toplevel
  from tf_fastgrnn import tfmot_compat  # pylint: disable=import-outside-toplevel
  tfmot_compat.check_version(tfmot_compat.TFMOT_VERSION)
  with pytest.raises(ImportError, match="written for tensorflow-model-optimization 0.8.1, "
                                        "found 0.9.0"):
    tfmot_compat.check_version("0.9.0")
