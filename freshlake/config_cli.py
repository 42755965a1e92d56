"""`freshlake config`: print the effective config (file + overrides, validated) as YAML."""

from __future__ import annotations

import argparse

import yaml

HELP = "print the effective, validated config (every key with its value) as YAML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("section", nargs="?", help="only this section, e.g. sampling")


def run(args: argparse.Namespace) -> int:
    tree = args.config.model_dump(mode="json")
    if args.section:
        if args.section not in tree:
            print(f"no config section {args.section!r}; sections: {', '.join(tree)}")
            return 2
        tree = {args.section: tree[args.section]}
    print(yaml.safe_dump(tree, sort_keys=False).rstrip())
    return 0
