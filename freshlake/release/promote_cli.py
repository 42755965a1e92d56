"""`freshlake promote`: make a signed, registered model the champion, recording why."""

from __future__ import annotations

import argparse
import sys

HELP = "make a model version the champion (refuses unsigned or changed models)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "model", nargs="?", default=None, help="a signed model folder (registered if it is not)"
    )
    which.add_argument("--version", default=None, help="a registered version number")
    parser.add_argument("--reason", required=True, help="why; recorded on the version and event")


def run(args: argparse.Namespace) -> int:
    from freshlake.release.events import open_event_lake, record_event
    from freshlake.release.registry import CHALLENGER, Registry, RegistryError
    from freshlake.release.signing import SignatureError, verify_model

    config = args.config
    registry = Registry(config)
    moves = []
    try:
        if args.model:
            r = config.release
            verify_model(args.model, r.signing_key_env, r.require_keyed_signature)
            version = registry.version_of(args.model)
            if version is None:
                moves.append(registry.register(args.model, alias=None))
                version = moves[-1].version
        else:
            version = args.version or registry.alias_version(CHALLENGER)
            if version is None:
                raise RegistryError("name a model folder or --version (there is no challenger)")
        moves.append(registry.promote(version, args.reason))
    except (SignatureError, RegistryError) as exc:
        print(f"freshlake promote: refused: {exc}", file=sys.stderr)
        return 1
    lake = open_event_lake(config)
    for move in moves:
        record_event(lake, registry.name, move)
    move = moves[-1]
    print(
        f"{registry.name}: champion is version {move.version} "
        f"(was {move.previous_version or 'none'}): {args.reason}"
    )
    return 0
