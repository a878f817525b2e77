"""What every command group of the CLI shares: the console, the options several commands
take, the error handling that turns known failures into one line, loading the feature
repo, and the Spark progress bar."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from feature_core.definitions import DefinitionError, FeatureRepo
from feature_core.settings import Settings
from feature_core.sources import EventSource

# soft_wrap: a message is one line the terminal wraps, so paths and commands in it stay
# whole when copied or grepped (rich would otherwise break them at 80 columns in pipes).
# No emoji codes: a reference such as `risk:x:` would print as `risk❌`.
console = Console(soft_wrap=True, emoji=False)
StatusFile = Annotated[
    Path | None, typer.Option(help="Write a heartbeat/status JSON here (used by the stack).")
]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="A declared source (default: the only one).")
]
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Known operational failures print one line saying how to fix them, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import redis
        from pydantic import ValidationError

        from infra.broker import BrokerUnavailable
        from runtime.kafka import KafkaUnavailable

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # click's exits subclass RuntimeError
            raise
        except DefinitionError as error:  # one problem a line (derived features: several)
            for line in str(error).splitlines() or [""]:
                console.print(f"[red]error:[/red] {escape(line)}", highlight=False)
            raise typer.Exit(1) from None
        except (KafkaUnavailable, BrokerUnavailable, RuntimeError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from None
        except redis.AuthenticationError as error:  # before ConnectionError: a subclass
            console.print(
                f"[red]error:[/red] Redis refused the password ({error}): it comes from "
                "LFP_REDIS_URL, else LFP_REDIS_PASSWORD_FILE (default "
                "<data_dir>/secrets/redis-password, the embedded Redis's); use the server's"
            )
            raise typer.Exit(1) from None
        except (redis.ConnectionError, redis.exceptions.RedisClusterException) as error:
            console.print(
                f"[red]error:[/red] Redis unreachable ({error}): start the stack with "
                "`make up` (or the cluster with `lfp cluster up`) or set LFP_REDIS_URL"
            )
            raise typer.Exit(1) from None
        except redis.TimeoutError as error:  # StoreTimeoutError's line names the setting
            from online_store.timeouts import StoreTimeoutError

            why = error if isinstance(error, StoreTimeoutError) else f"Redis timed out ({error})"
            console.print(f"[red]error:[/red] {why}", highlight=False)
            raise typer.Exit(1) from None
        except ValidationError as error:
            console.print(f"[red]error:[/red] invalid settings: {error}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def setup_logging() -> None:
    """Log lines for the long-running services (ingest, speed job, scheduler, supervisor)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per REST call otherwise


def load_repo(settings: Settings) -> FeatureRepo:
    """The feature repo of LFP_FEATURE_REPO; a declaration it could not build is one
    :class:`DefinitionError` naming where, which :func:`friendly_errors` prints."""
    from feature_core.derived import ExpressionError

    try:
        return FeatureRepo.from_module(settings.feature_repo)
    except (ExpressionError, KeyError) as error:
        # An expression the repo module could not even build (``if`` on an expression, a
        # derived view's unknown feature): one line naming where, not a traceback.
        where = _declared_at(error)
        if where is None:
            raise
        message = error.args[0] if error.args else repr(error)
        raise DefinitionError(f"{where}: {message}") from None


def _declared_at(error: BaseException) -> str | None:
    """``file:line`` of the declaration that raised ``error`` from feature_core.derived,
    or ``None`` when it did not come from there (a bug of the module itself)."""
    import traceback

    import feature_core.derived

    frames = traceback.extract_tb(error.__traceback__)
    if not frames or frames[-1].filename != feature_core.derived.__file__:
        return None
    core = str(Path(feature_core.derived.__file__).parent)
    user = [f for f in frames if not f.filename.startswith(core)]
    if not user:
        return None
    return f"{user[-1].filename}:{user[-1].lineno}"


def pick_source(settings: Settings, name: str | None) -> EventSource:
    """The source ``--source`` names, or the repo's only one."""
    repo = load_repo(settings)
    if name is None:
        if len(repo.sources) != 1:
            known = ", ".join(s.name for s in repo.sources)
            raise RuntimeError(
                f"the repo declares several sources ({known}): pick one with --source"
            )
        return repo.sources[0]
    try:
        return repo.source(name)
    except KeyError as error:
        raise RuntimeError(str(error.args[0])) from None


@contextmanager
def spark_task_bar() -> Iterator[Callable[[Any], None]]:
    """A transient bar of a Spark job's tasks; yields the function that takes each
    progress snapshot (stages and tasks, done and known)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("Spark tasks", total=None)

        def show(snapshot: Any) -> None:
            progress.update(
                task,
                total=max(snapshot.tasks, 1),
                completed=snapshot.tasks_done,
                description=f"stages {snapshot.stages_done}/{snapshot.stages}, tasks",
            )

        yield show
