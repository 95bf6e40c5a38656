"""``python -m tribune.gateway``: serve the gateway over stdio (default) or streamable HTTP.

    TRIBUNE_TASK_TOKEN=... python -m tribune.gateway --home ~/.tribune
    python -m tribune.gateway --home ~/.tribune --http 127.0.0.1:8710

The ``[gateway]`` table is read from ``--config`` (a TOML file), else from the home's
``tribune.toml``. Logs go to stderr (stdout is the MCP stream over stdio). ``tribune gateway``
is the command people use; this entry point serves it and the tests.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from tribune.errors import ConfigError, TribuneError
from tribune.gateway.config import DEFAULT_URL, parse_gateway
from tribune.gateway.stdio import take_token


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read `{path}`: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"`{path}` is not valid TOML: {exc}") from None


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError("write HOST:PORT, e.g. 127.0.0.1:8710")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tribune.gateway", description=__doc__)
    parser.add_argument("--home", help="Tribune home (default: TRIBUNE_HOME or ~/.tribune)")
    parser.add_argument("--config", type=Path, help="TOML file holding the [gateway] table")
    parser.add_argument("--http", type=_address, metavar="HOST:PORT", help="serve HTTP here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log upstream events")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="tribune gateway: %(levelname)s %(name)s: %(message)s",
    )
    token = take_token()  # out of the environment before anything can inherit it

    from tribune.bootstrap import open_tribune, resolve_home

    try:
        home = resolve_home(args.home)
        with open_tribune(home) as tr:
            # The home's [gateway] table (checked when the home opened), or --config's.
            settings = parse_gateway(_read(args.config)) if args.config else tr.settings.gateway
            if args.http is None:
                from tribune.gateway.stdio import serve

                serve(tr, settings, token=token)
            else:
                import uvicorn

                from tribune.gateway.http_app import create_app

                host, port = args.http
                if settings.url == DEFAULT_URL:  # not configured: where this process listens
                    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                    settings = replace(settings, url=f"http://{netloc}/mcp")
                app = create_app(tr, settings, host=host)
                uvicorn.run(app, host=host, port=port, log_level="warning")
    except TribuneError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        print(f"tribune gateway: {exc.message}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
