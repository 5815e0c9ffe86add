"""``event-gateway serve | dev``: the console entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from . import config as configmod
from . import devmode
from .server import serve

log = logging.getLogger("event_gateway")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="event-gateway", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", "-c", help="Java-style .properties file")
    serve.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one key"
    )
    serve.add_argument("--log-level", default="INFO")
    devmode.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if args.command == "dev":
        return devmode.run(args)
    try:
        cfg = configmod.load(args.config, overrides=args.set)
    except configmod.ConfigError as exc:
        print(f"event-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    for key in cfg.unknown_keys:
        log.warning("unknown configuration key %r ignored", key)
    log.info("Kafka %s, sessions %s", cfg.bootstrap_servers, cfg.session_store_url)
    try:
        asyncio.run(serve(cfg))
    except OSError as exc:  # e.g. the port is taken
        print(f"event-gateway: cannot serve on {cfg.listener.url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
