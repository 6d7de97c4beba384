"""dvc.yaml's code deps are complete: every salad module a stage runs is covered by one of its deps, and no src dep
is one the stage does not run.

A stage runs the function its cmd names through the CLI table (salad.cli.COMMANDS); the modules it runs are the
import closure of that function's module (for a wrapper in salad.cli, of the modules its body imports), plus, for a
report stage, of the notebook it executes. The closure is read statically with `ast`: every `import salad.x`,
`from salad.x import y` and `from salad import x`, inside functions too, transitively; a package import also runs its
__init__.py. The rule for deps (dvc.yaml's header): a stage module (src/salad/stages/*.py) and a top-level module
(src/salad/*.py) as a file, a library package (src/salad/<package>) as its folder.
"""

import ast
import inspect
import shlex
from functools import cache
from pathlib import Path

import pytest
import yaml

from salad.cli import COMMANDS, options

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "salad"
STAGE_MODULES = PACKAGE / "stages"
REPORT_COMMANDS = ("report", "report-index")  # the stages that render reports: the only ones that may run salad.analysis


def module_file(name: str) -> Path | None:
    """src/salad/x/y.py or src/salad/x/y/__init__.py for the module salad.x.y; None when there is none."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _packages_of(name: str) -> list[str]:
    """salad.x.y -> salad, salad.x: importing a module runs the __init__.py of every package above it."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports_in(tree: ast.AST, module: str | None) -> set[str]:
    """The salad modules a syntax tree imports (anywhere in it), with the packages above them."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "salad"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the package of `module` (a package's __init__ is its own package)
                package = module if module_file(module).name == "__init__.py" else module.rpartition(".")[0]
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "salad":
                continue
            found.add(base)
            # `from salad.pkg import name` imports the submodule salad.pkg.name when there is one
            found |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}") is not None}
    return {m for name in found if module_file(name) for m in (name, *_packages_of(name))}


@cache
def _module_imports(name: str) -> frozenset[str]:
    path = module_file(name)
    return frozenset(imports_in(ast.parse(path.read_text(encoding="utf-8")), name))


def closure(start: set[str]) -> set[str]:
    """Every salad module `start` imports, transitively, `start` included."""
    seen, todo = set(), {m for name in start for m in (name, *_packages_of(name))}
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        todo |= _module_imports(name) - seen
    return seen


def inert(path: Path) -> bool:
    """A module that cannot change a result: nothing but a docstring and dunder constants (`__version__`)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        dunder = (isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.startswith("__")
                                                       for t in node.targets))
        if not (docstring or dunder):
            return False
    return True


def stage_roots(cmd: str) -> tuple[str, set[str], set[str]]:
    """(subcommand, the modules the stage's cmd starts from, the notebooks it runs) for one dvc.yaml cmd."""
    words = shlex.split(cmd)
    assert words[0] == "salad" and words[1] in COMMANDS, cmd
    function = COMMANDS[words[1]].function()
    if function.__module__ == "salad.cli":  # a wrapper: what its body imports (salad.cli is the dispatcher)
        roots = imports_in(ast.parse(inspect.getsource(function)), "salad.cli")
    else:
        roots = {function.__module__}
    notebooks = {w for w in words[2:] if w.endswith(".py") and (REPO / w).is_file()}
    for notebook in notebooks:
        roots |= imports_in(ast.parse((REPO / notebook).read_text(encoding="utf-8")), None)
    return words[1], roots, notebooks


def expected_dep(path: Path) -> str:
    """The dep that covers a module file under the rule: a stage module or a top-level module itself, else the
    folder of its library package."""
    relative = path.relative_to(PACKAGE)
    if len(relative.parts) == 1 or relative.parts[0] == STAGE_MODULES.name:
        return str(path.relative_to(REPO))
    return str((PACKAGE / relative.parts[0]).relative_to(REPO))


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, a foreach stage by its `do` body."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in raw.items()}


def code_closure(stage: dict) -> tuple[str, set[Path]]:
    """(subcommand, the files of every salad module the stage runs, inert ones left out)."""
    command, roots, _ = stage_roots(stage["cmd"])
    return command, {p for p in map(module_file, closure(roots)) if not inert(p)}


def code_deps(stage: dict) -> list[str]:
    """The src deps the rule gives a stage: its function's module first, then files (stage modules first), then
    library folders."""
    _, roots, _ = stage_roots(stage["cmd"])
    own = {expected_dep(module_file(m)) for m in roots if m.count(".") == 2 and m.startswith("salad.stages.")}
    _, files = code_closure(stage)
    deps = {expected_dep(p) for p in files}
    return sorted(deps, key=lambda d: (d not in own, not d.endswith(".py"), not d.startswith("src/salad/stages/"), d))


def _covered(path: Path, deps: list[str]) -> bool:
    return any(path == REPO / d or (REPO / d) in path.parents for d in deps)


STAGES = stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dep(name):
    stage = STAGES[name]
    _, files = code_closure(stage)
    deps = [str(d) for d in stage.get("deps", [])]
    missing = sorted({expected_dep(p) for p in files if not _covered(p, deps)})
    assert not missing, f"stage {name} runs code it does not depend on; add to its deps: {missing}"
    _, _, notebooks = stage_roots(stage["cmd"])
    assert notebooks <= set(deps), f"stage {name} executes {sorted(notebooks - set(deps))}: add to its deps"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_src_deps_follow_the_rule_and_are_all_run(name):
    """A src dep is a stage module or a top-level module (a file) or a library package (a folder), and the stage
    runs something in it: editing code a stage does not run reruns nothing."""
    stage = STAGES[name]
    _, files = code_closure(stage)
    for dep in (str(d) for d in stage.get("deps", [])):
        if not dep.startswith("src/"):
            continue
        path = REPO / dep
        assert path.exists(), f"stage {name}: dep {dep} does not exist"
        if path.is_file():
            assert expected_dep(path) == dep, f"stage {name}: {dep} is a library module; depend on its folder " \
                                              f"{expected_dep(path)}"
        else:
            assert path.parent == PACKAGE and path != STAGE_MODULES, \
                f"stage {name}: {dep}: a folder dep is a library package src/salad/<package>"
        assert path != PACKAGE / "cli.py", f"stage {name}: salad.cli is the dispatcher, no dep (dvc.yaml's header)"
        assert any(p == path or path in p.parents for p in files), \
            f"stage {name} depends on {dep} but runs nothing in it"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_only_report_stages_run_the_analysis(name):
    """Editing a report re-renders reports and retrains or re-evaluates nothing."""
    command, files = code_closure(STAGES[name])
    if command in REPORT_COMMANDS:
        return
    analysis = sorted(str(p.relative_to(REPO)) for p in files if PACKAGE / "analysis" in p.parents)
    assert not analysis, f"stage {name} (salad {command}) runs salad.analysis: {analysis}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cmd_passes_every_path_of_its_function(name):
    """salad.cli adds no path of its own: every path parameter of the function (the params file aside) is in the
    cmd, so that the cmd, not the CLI or a signature's default, says what the stage reads and writes."""
    words = shlex.split(STAGES[name]["cmd"])
    for option in options(COMMANDS[words[1]].function()):
        if option.flag != "--params" and option.argparse.get("type") is Path:
            assert option.flag in words, f"stage {name}: cmd does not pass {option.flag}"


if __name__ == "__main__":  # print the src deps every stage should list
    for name, stage in STAGES.items():
        print(f"{name}:", *(f"  - {d}" for d in code_deps(stage)), sep="\n")
