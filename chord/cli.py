"""`chord`: one command for chord's command lines (the console script setup.cfg installs).

    chord train recipes/tiny.yaml trainer.steps=10      # python chord/train.py ...
    chord train --describe trainer.lr                   # every recipe key: chord train --help
    chord eval runs/tiny-chord-phi --recipe recipes/tiny_math.yaml
    chord export runs/tiny-chord-phi exported/
    chord diagnose SFT_PEAK SFT_END RL_END --out diag/
    chord compare runs/a=CHORD runs/b=GRPO --out runs/compare

Each subcommand gets the rest of the command line unchanged and is imported only when chosen: `chord --help`
takes 0.02 s, `chord train --help` (torch and the trainer imported) 1.2 s on a 2-core CPU machine. Several
ranks still launch the script itself (`deepspeed chord/train.py ...`, `torchrun ... chord/train.py ...`): a
launcher runs a file, not a console script. `compare` runs benchmarks/compare.py of the checkout chord is
installed from (`pip install -e .`): it lives beside the benchmarks it plots, and a wheel install has no such
folder.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

COMPARE = Path(__file__).resolve().parent.parent / "benchmarks" / "compare.py"


def _train(argv: list[str]) -> int:
    from chord.train import main

    return main(argv)


def _eval(argv: list[str]) -> int:
    from chord.eval import main

    return main(argv)


def _export(argv: list[str]) -> int:
    from chord.export import main

    return main(argv)


def _diagnose(argv: list[str]) -> int:
    from chord.diagnose import main

    return main(argv)


def _compare(argv: list[str]) -> int:
    if not COMPARE.is_file():
        print(f"chord: compare runs benchmarks/compare.py from a chord checkout, and {COMPARE} does not exist "
              "(install chord from a clone with `pip install -e .`)", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("chord_compare", COMPARE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


COMMANDS = {  # name: (entry point, one line for `chord --help`)
    "train": (_train, "train on a recipe: RECIPE [dotted.key=value ...]; --help lists every recipe key"),
    "eval": (_eval, "evaluate a model, run folder or checkpoint on benchmarks (python -m chord.eval)"),
    "export": (_export, "export a checkpoint as a save_pretrained folder (python -m chord.export)"),
    "diagnose": (_diagnose, "weight-spectrum diagnostics and repairs between checkpoints (python -m chord.diagnose)"),
    "compare": (_compare, "compare finished runs: a markdown table, JSON and plots (benchmarks/compare.py)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(["usage: chord COMMAND [ARGS ...]", "", "commands:", *lines, "",
                      "`chord COMMAND --help` describes one command."]) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(usage(), end="")
        return 0
    if not argv:
        print(usage(), end="", file=sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        print(f"chord: unknown command '{argv[0]}'; commands: {', '.join(COMMANDS)} (chord --help)", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
