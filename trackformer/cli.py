"""The ``trackformer`` command line (``python -m trackformer``)."""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="trackformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="end-to-end demo (not yet available)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        print("trackformer demo: the end-to-end demo lands with the model and training issues.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
