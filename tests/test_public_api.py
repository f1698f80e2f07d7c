"""The public API: what the package root exports, and the house rules every module keeps."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import hypermetric as hm

EXPECTED = {
    "Component",
    "Eval",
    "HypermetricError",
    "RateLimit",
    "RateLimited",
    "Retry",
    "RunContext",
    "RunResult",
    "Runtime",
    "Settings",
    "Transient",
    "bind",
    "compare",
    "power",
    "component",
    "connect",
    "errors",
    "eval",
    "get_settings",
    "history",
    "metrics",
    "rescore",
    "resume",
    "retry",
    "runtime",
    "sql",
}


def _modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(hm.__path__, "hypermetric.")
        if not m.name.startswith("hypermetric._migrations") and not m.name.endswith("__main__")
    ]


def test_the_root_exports_exactly_the_public_api() -> None:
    assert set(hm.__all__) == EXPECTED
    for name in hm.__all__:
        assert getattr(hm, name) is not None, name
    assert hm.RunResult.__module__ == "hypermetric.query.result"


def test_every_module_declares_all_and_documents_its_public_names() -> None:
    undocumented = []
    for name in _modules():
        module = importlib.import_module(name)
        assert module.__doc__, f"{name} has no docstring"
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        for public in module.__all__:
            obj = getattr(module, public)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                undocumented.append(f"{name}.{public}")
    assert undocumented == []


def test_decorating_code_starts_no_ray_and_opens_no_db() -> None:
    import subprocess
    import sys

    code = (
        "import sys, hypermetric as hm\n"
        "@hm.component(evals=[hm.metrics.exact_match])\n"
        "def f(question): return question\n"
        "@hm.runtime(name='x', dataset=[{'question': 'q', 'answer': 'q'}])\n"
        "def r(example): return f(example['question'])\n"
        "heavy = ('ray', 'sqlalchemy', 'duckdb', 'apscheduler')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_command_line_loads_ray_only_to_run_an_evaluation() -> None:
    import subprocess
    import sys

    code = "import sys, hypermetric.cli\nprint('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
