"""`initsweep ui`: serve the read-only dashboard over a database."""

from __future__ import annotations

import click

from scheduler.cli.options import DB_OPTION
from scheduler.database import open_database


@click.command("ui")
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port; the URL is printed).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.5),
    default=3.0,
    show_default=True,
    help="Seconds between the pages' refreshes of live progress.",
)
def ui(db: str | None, host: str, port: int, poll: float) -> None:
    """Open a local web dashboard of the database: sweeps, live progress, results, plots.

    Read-only (it never writes to the database) and bound to 127.0.0.1 unless --host says
    otherwise. Stop it with Ctrl-C.
    """
    import socket

    import uvicorn

    from scheduler.database import database_url, redact
    from scheduler.errors import RuntimeFailure
    from scheduler.ui import create_app

    url = database_url(db)
    with open_database(db, read_only=True) as factory:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise RuntimeFailure(f"ui: cannot listen on {host}:{port}: {exc.strerror}") from exc
        try:
            sock.listen(2048)  # connections wait in the backlog until the server accepts them
            bound = sock.getsockname()[1]
            local = host in ("127.0.0.1", "localhost", "::1")
            hosts = ["127.0.0.1", "localhost"] + ([] if local else ["*"])
            app = create_app(factory, database=redact(url), poll_s=poll, allowed_hosts=hosts)
            shown = f"[{host}]" if ":" in host else host
            click.echo(
                f"initsweep ui: http://{shown}:{bound}/ · {redact(url)} (read-only)", err=True
            )
            if not local:
                click.echo(
                    f"initsweep ui: listening on {host}: anyone who can reach it can read every "
                    "result (there is no login)",
                    err=True,
                )
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on
            pass
        finally:
            sock.close()
        click.echo("initsweep ui: stopped", err=True)
