"""`freshlake sign MODEL`: sign a qualified model folder (signature.json)."""

from __future__ import annotations

import argparse
import sys

HELP = "sign a qualified model: digest over weights, card and qualification report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model folder that passed `freshlake qualify`")


def run(args: argparse.Namespace) -> int:
    from freshlake.release.signing import SignatureError, sign_model

    r = args.config.release
    try:
        signature = sign_model(args.model, r.signing_key_env)
    except SignatureError as exc:
        print(f"freshlake sign: refused: {exc}", file=sys.stderr)
        return 1
    kind = "HMAC-SHA256" if signature["keyed"] else f"SHA-256, unkeyed (${r.signing_key_env} unset)"
    print(f"signed {args.model}: {signature['digest']} ({kind})")
    return 0
