"""``python -m kerasimg.zoo list|show NAME|remove NAME[/VERSION]|config|reindex``: look after the zoo.

``reindex`` rebuilds a damaged ``zoo.json`` from the version folders.
"""

from __future__ import annotations

import json
import sys

from kerasimg.cli import command_parser, run_cli
from kerasimg.errors import UserError
from kerasimg.serving.zoo import DEFAULT_ZOO


def main(argv: list[str] | None = None) -> int:
    p = command_parser("python -m kerasimg.zoo", __doc__)
    p.add_argument("command", choices=["list", "show", "remove", "config", "reindex"])
    p.add_argument("target", nargs="?", help="NAME for show, NAME[/VERSION] for remove")
    p.add_argument("--zoo", default=DEFAULT_ZOO)
    args = p.parse_args(argv)

    def run() -> int:
        from kerasimg.serving.zoo import Zoo, models_config, render_table

        zoo = Zoo(args.zoo)
        if args.command == "reindex":
            if not zoo.root.is_dir():
                raise UserError(f"No zoo folder {zoo.root} to reindex. Received: --zoo {args.zoo}")
            rebuilt = zoo.reindex()
            print(f"Rebuilt {zoo.index_path} from its version folders: {len(rebuilt)} version(s).")
            return 0
        entries = zoo.entries()
        if args.command == "list":
            print(render_table(entries) if entries else f"The zoo in {zoo.root} is empty.")
        elif args.command == "config":
            print(models_config(sorted({e["name"] for e in entries})), end="")
        else:
            if not args.target:
                raise UserError(f"`zoo {args.command}` needs a model name.")
            name, version = zoo.parse_target(args.target)
            if args.command == "show":
                found = [e for e in entries if e["name"] == name and version in (None, e["version"])]
                if not found:
                    raise UserError(
                        f"No model {args.target!r} in {zoo.root}; `python -m kerasimg.zoo list` shows them."
                    )
                print(json.dumps(found, indent=2))
            else:
                removed = zoo.remove(name, version)
                print(f"Removed {name} version(s) {', '.join(map(str, removed))}.")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
