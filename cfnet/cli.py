"""The ``cfnet`` command line.

Each command lives in the module that owns the concept and exposes two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def main(args: argparse.Namespace) -> int | None: ...

Only the chosen command's module is imported, so ``cfnet --help`` stays fast and one command's
optional dependency (gradio, say) never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (words, module, one-line help)
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("info",), "cfnet.info", "parameter counts per component and the resolved config of a preset"),
    (("bench", "modules"), "cfnet.bench.modules", "time and memory of SCM, ICM and attention vs map size"),
    (("bench", "model"), "cfnet.bench.model", "inference latency of a preset, optionally vs a variant"),
    (("bench", "train"), "cfnet.bench.train", "training img/s and its data/forward/backward/optimiser split"),
    (("bench", "parts"), "cfnet.bench.parts", "where SCM and ICM spend their time in the model"),
    (("bench", "gpu"), "cfnet.bench.gpu", "the GPU checks in one go: AMP training vs CPU, model and modules"),
    (("data", "shapes"), "cfnet.data.shapes", "generate the synthetic `shapes` panoptic dataset"),
    (("train",), "cfnet.engine.train", "train a model (single process or under torchrun)"),
    (("eval",), "cfnet.engine.evaluate", "PQ/SQ/RQ, mIoU and mask AP of a checkpoint on a split"),
    (("predict",), "cfnet.engine.predict", "panoptic predictions (PNG + JSON + overlays) for images"),
    (("analyze",), "cfnet.diagnostics", "what SCM and ICM learned, as numbers (Fig. 8) on a split"),
    (("export",), "cfnet.engine.export", "release checkpoint (fp16 weights, no optimiser) + card from a run"),
    (("ablate", "run"), "cfnet.ablation_study", "train the ablation runs not yet cached"),
    (("ablate", "report"), "cfnet.ablation_report", "the ablation report (Markdown) from cached results"),
    (("demo",), "app.main", "start the Gradio demo"),
]


def _usage() -> str:
    lines = ["usage: cfnet <command> [options]", "", "commands:"]
    for words, _, help_ in COMMANDS:
        lines.append(f"  {' '.join(words):<16} {help_}")
    lines += ["", "Run `cfnet <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for words, module_name, help_ in sorted(COMMANDS, key=lambda c: -len(c[0])):
        if tuple(argv[: len(words)]) == words:
            module = importlib.import_module(module_name)
            parser = argparse.ArgumentParser(prog="cfnet " + " ".join(words), description=help_)
            module.add_arguments(parser)
            args = parser.parse_args(argv[len(words) :])
            return int(module.main(args) or 0)
    if argv and argv[0] not in ("-h", "--help"):
        print(f"cfnet: unknown command {' '.join(argv[:2])!r}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    print(_usage())
    return 0


if __name__ == "__main__":
    sys.exit(main())
