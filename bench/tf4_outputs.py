# mypy: ignore-errors
# (It runs against transformers 4.57.6 in its own venv; this repository type-checks against 5.x.)
"""The outputs of transformers 4.57.6's pipelines for `python -m bench.agreement`: each case's output, or the error
the pipeline raised on it. Runs in that version's own throwaway venv (transformers 5 removed the QA pipeline):
imports nothing of distilq.

    python bench/tf4_outputs.py REQUEST.json  → JSON list on stdout, one entry a case
"""

import json
import sys

import torch
from transformers import pipeline


def main(path: str) -> None:
    request = json.load(open(path))
    task = request["task"]
    pipe = pipeline(task, model=request["model"], device=request.get("device", "cpu"),
                    torch_dtype=getattr(torch, request.get("dtype", "float32")))
    outputs = []
    for case in request["cases"]:
        try:
            if task == "question-answering":
                outputs.append(pipe(question=case["question"], context=case["context"], **case["parameters"]))
            else:
                outputs.append(pipe(case["text"], **case["parameters"]))
        except BaseException as error:  # the tokenizers library panics (a BaseException) on a stride it refuses
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            outputs.append({"pipeline_error": f"{type(error).__name__}: {str(error)[:200]}"})
    json.dump(outputs, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
