"""python -m dialogue.eval [--split dev|test] [--failures]: the caller-side evaluation table."""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    from . import SPLITS, failures, load_items, run, table

    parser = argparse.ArgumentParser(prog="python -m dialogue.eval")
    parser.add_argument("--split", choices=SPLITS, default="dev")
    parser.add_argument("--failures", action="store_true", help="also list every item the policy got wrong")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)
    items = load_items(args.split)
    outcomes = run(args.split, items)
    print(f"split {args.split}: {len(items)} utterances, offline policy")
    print(table(outcomes))
    if args.failures:
        print("\nfailures:\n" + (failures(outcomes) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
