"""Logs of the real tools to import: Inspect AI logs written by ``inspect_ai`` itself with
its offline mock model, and lm-evaluation-harness output written to its documented format."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: the questions of the Inspect task, the answer each mock model gives, and the target
QUESTIONS = {
    "q1": ("What is 1+1?", "2"),
    "q2": ("Say hi", "hi"),
    "q3": ("Capital of France?", "Paris"),
    "q4": ("Explode", "boom"),
}
ANSWERS = {
    "model-a": {"What is 1+1?": "2", "Say hi": "hi there", "Capital of France?": "no idea"},
    "model-b": {"What is 1+1?": "2", "Say hi": "hi", "Capital of France?": "Paris"},
}


def _mock(model: str) -> Any:
    """A mock model answering from ANSWERS (its token usage set, so nothing is downloaded);
    the question "Explode" raises: that sample fails."""
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    table = ANSWERS[model]

    def answer(messages: Any, tools: Any, tool_choice: Any, config: Any) -> Any:
        text = messages[-1].text
        if text == "Explode":
            raise RuntimeError("the model exploded")
        out = ModelOutput.from_content(model="mockllm", content=table.get(text, "no idea"))
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return out

    return get_model(f"mockllm/{model}", custom_outputs=answer)


def _task() -> Any:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import Score, includes, match, mean, scorer

    @scorer(metrics={"*": [mean()]})
    def shape() -> Any:
        async def score(state: Any, target: Any) -> Any:
            text = state.output.completion
            return Score(value={"words": len(text.split()), "long": len(text) > 3})

        return score

    samples = [
        Sample(input=q, target=t, id=i if i != "q2" else 2, metadata={"topic": i[-1]})
        for i, (q, t) in QUESTIONS.items()
    ]
    return Task(dataset=samples, scorer=[match(), includes(), shape()], name="arith", epochs=2)


@dataclass(frozen=True)
class InspectLogs:
    """Logs of one task run on two mock models, in both formats."""

    a_eval: Path
    a_json: Path
    b_eval: Path
    b_json: Path


@pytest.fixture(scope="session")
def inspect_logs(tmp_path_factory: pytest.TempPathFactory) -> InspectLogs:
    """Real Inspect logs, written once for the session by ``inspect_ai.eval``."""
    pytest.importorskip("inspect_ai")
    from inspect_ai import eval as inspect_eval

    os.environ.setdefault("INSPECT_LOG_LEVEL", "warning")
    found: dict[str, Path] = {}
    for model in ANSWERS:
        for fmt in ("eval", "json"):
            folder = tmp_path_factory.mktemp(f"inspect-{model}-{fmt}")
            (log,) = inspect_eval(
                _task(),
                model=_mock(model),
                log_dir=str(folder),
                log_format=fmt,
                display="none",
                fail_on_error=False,
            )
            assert log.status == "success", log.error
            found[f"{model[-1]}_{fmt}"] = Path(log.location)
    return InspectLogs(**found)


# -- lm-evaluation-harness ---------------------------------------------------------------

#: per task: its documents (question, gold), the metric and its direction
LM_TASKS = {
    "arc_easy": {"metric": "acc", "up": True, "docs": [("sky?", "blue"), ("grass?", "green")]},
    "wikitext": {
        "metric": "word_perplexity",
        "up": False,
        "docs": [("page one", ""), ("page two", ""), ("page one", "")],
    },
}


def _doc_hash(doc: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def lm_sample(task: str, doc_id: int, value: float, *, filt: str = "none") -> dict[str, Any]:
    """One line of a samples file as lm-eval writes it with --log_samples."""
    spec = LM_TASKS[task]
    question, gold = spec["docs"][doc_id]
    doc = {"question": question, "answer": gold}
    return {
        "doc_id": doc_id,
        "doc": doc,
        "target": gold,
        "arguments": {"gen_args_0": {"arg_0": f"Q: {question}\nA:", "arg_1": f" {gold}"}},
        "resps": [[[str(-value), "False"]]],
        "filtered_resps": [[str(-value), "False"]],
        "filter": filt,
        "metrics": [spec["metric"]],
        "doc_hash": _doc_hash(doc),
        "prompt_hash": "p" * 64,
        "target_hash": "t" * 64,
        spec["metric"]: value,
    }


def write_lmeval(
    folder: Path,
    *,
    model: str,
    stamp: str,
    values: dict[str, list[float]],
    date: float,
    line: Callable[[str, int, float], dict[str, Any]] = lm_sample,
) -> Path:
    """An lm-eval output folder: ``folder/<model>/results_<stamp>.json`` and one samples
    file per task of ``values`` (a value per document). Returns the results file."""
    out = folder / model.replace("/", "__")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for task, per_doc in values.items():
        metric = LM_TASKS[task]["metric"]
        results[task] = {
            "alias": task,
            f"{metric},none": sum(per_doc) / len(per_doc),
            f"{metric}_stderr,none": 0.1,
        }
        lines = [json.dumps(line(task, i, v)) for i, v in enumerate(per_doc)]
        (out / f"samples_{task}_{stamp}.jsonl").write_text("\n".join(lines) + "\n")
    document = {
        "results": results,
        "groups": {},
        "group_subtasks": {task: [] for task in values},
        "configs": {
            task: {
                "task": task,
                "dataset_path": f"allenai/{task}",
                "test_split": "test",
                "output_type": "loglikelihood",
                "num_fewshot": 0,
                "doc_to_text": "Q: {{question}}\nA:",
                "metric_list": [{"metric": LM_TASKS[task]["metric"]}],
            }
            for task in values
        },
        "versions": dict.fromkeys(values, 1.0),
        "n-shot": dict.fromkeys(values, 0),
        "higher_is_better": {t: {LM_TASKS[t]["metric"]: LM_TASKS[t]["up"]} for t in values},
        "n-samples": {t: {"original": len(v), "effective": len(v)} for t, v in values.items()},
        "config": {
            "model": "hf",
            "model_args": f"pretrained={model},dtype=float32",
            "batch_size": 1,
            "limit": None,
        },
        "model_name": model,
        "date": date,
        "lm_eval_version": "0.4.8",
    }
    path = out / f"results_{stamp}.json"
    path.write_text(json.dumps(document, indent=2))
    return path
