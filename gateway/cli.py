"""``event-gateway serve | dev``: the console entry point."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from . import config as configmod
from . import devmode
from .app import build_app

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
    lst = cfg.listener
    log.info("event-gateway listening on %s, Kafka %s", lst.url, cfg.bootstrap_servers)
    web.run_app(
        build_app(cfg),
        host=lst.host,
        port=lst.port,
        print=None,
        shutdown_timeout=cfg.shutdown_timeout_ms / 1000,
        access_log=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
