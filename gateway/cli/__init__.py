"""``event-gateway serve | dev | user add``: the console entry point.

``serve`` runs one gateway replica from a configuration file (here); ``dev`` runs a throw-away
local broker plus one gateway (:mod:`gateway.cli.dev`, whose broker files ship as package data in
``gateway/cli/broker/``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from gateway import config as configmod
from gateway import loop
from gateway.config import redact
from gateway.observability.log_filters import configure_logging
from gateway.security.basic import UsersFileError
from gateway.server import serve
from gateway.workers.identity import WorkerIdentity
from gateway.workers.supervisor import Supervisor

from . import dev, users

log = logging.getLogger("event_gateway")

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="event-gateway", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the gateway")
    serve_cmd.add_argument("--config", "-c", help="Java-style .properties file")
    serve_cmd.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one key"
    )
    serve_cmd.add_argument("--log-level", default="INFO")
    dev.add_parser(sub)
    users.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if args.command == "dev":
        return dev.run(args)
    if args.command == "user":
        return users.run(args)
    # Certificate renewals signal SIGHUP at any time, even while this process starts: until
    # serve() (or the supervisor) handles it, it is ignored rather than fatal. Start-up reads
    # the files after this point anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        cfg = configmod.load(args.config, overrides=args.set)
    except configmod.ConfigError as exc:
        print(f"event-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(cfg.log_format)  # before anything logs: every line in one format
    for key in cfg.unknown_keys:
        log.warning("unknown configuration key %r ignored", key)
    # Through redact(): these URLs may carry passwords (redis://:pw@host), and logs travel.
    log.info(
        "Kafka %s, sessions %s, schema registry %s",
        redact(cfg.bootstrap_servers),
        redact(cfg.session_store_url),
        redact(cfg.schema_registry_url) or "none",
    )
    worker = WorkerIdentity.from_env()
    if worker is None and cfg.worker_count > 1:
        # The parent: binds the listener and keeps the workers running (gateway/workers).
        return Supervisor(cfg, sys.argv[1:] if argv is None else argv, cfg.worker_count).run()
    try:
        loop.run(serve(cfg, worker))
    except (UsersFileError, configmod.ConfigError) as exc:  # ConfigError: e.g. the rules file
        print(f"event-gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"event-gateway: cannot serve on {cfg.listener.url}: {exc}", file=sys.stderr)
        return 1
    return 0
