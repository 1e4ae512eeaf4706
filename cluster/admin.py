"""Admin commands: ``python -m cluster.admin create-org NAME`` / ``create-key ORG_ID NAME``."""

from __future__ import annotations

import argparse
import sys

from cluster.accounts import create_api_key, create_organization
from cluster.db import init_schema, session_scope
from schemas.settings import Settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.admin")
    sub = p.add_subparsers(dest="cmd", required=True)
    org = sub.add_parser("create-org", help="create an organization and its first API key")
    org.add_argument("name")
    org.add_argument("--custom-model-limit", type=int)
    key = sub.add_parser("create-key", help="create an API key for an organization")
    key.add_argument("organization_id")
    key.add_argument("name")
    key.add_argument("--scopes", help="comma-separated; default: all")
    args = p.parse_args(argv)
    settings = Settings()
    init_schema(settings.database_url)
    with session_scope(settings.database_url) as s:
        if args.cmd == "create-org":
            o = create_organization(s, args.name, custom_model_limit=args.custom_model_limit)
            _, secret = create_api_key(s, o.id, f"{args.name}-admin")
            print(f"organization {o.id}\napi key {secret}")
        else:
            scopes = args.scopes.split(",") if args.scopes else None
            _, secret = create_api_key(s, args.organization_id, args.name, scopes=scopes)
            print(f"api key {secret}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
