"""Command line: build a knowledge index, or ask the configured policy a question.

    python -m dialogue ingest OUT_DIR docs/ faq.yaml manual.pdf
    python -m dialogue ask "What are your opening hours?"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from . import DialogueSettings, Message, TextDelta, ToolCall, load_policy
from .knowledge import IngestError, build_index, ingest_paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dialogue")
    sub = parser.add_subparsers(dest="cmd", required=True)
    ing = sub.add_parser("ingest", help="ingest documents into a knowledge index folder")
    ing.add_argument("out")
    ing.add_argument("sources", nargs="+")
    ask = sub.add_parser("ask", help="ask the configured policy (DIALOGUE_* settings) one question")
    ask.add_argument("question")
    args = parser.parse_args(argv)

    if args.cmd == "ingest":
        try:
            chunks = ingest_paths(args.sources)
        except IngestError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        build_index(chunks, args.out)
        print(f"{len(chunks)} chunks from {len({c.source for c in chunks})} documents -> {args.out}")
        return 0

    async def run() -> None:
        policy = load_policy(DialogueSettings())
        async for ev in policy.respond([Message("user", args.question)]):
            if isinstance(ev, TextDelta):
                print(ev.text, end="", flush=True)
            elif isinstance(ev, ToolCall):
                print(f"\n[tool] {ev.name} {json.dumps(ev.arguments, ensure_ascii=False)}")
        print()
        rec = policy.turns[-1]
        print(f"[{rec.decision}] citations={[c['source'] + ':' + c['title'] for c in rec.citations]}", file=sys.stderr)
        await policy.aclose()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
