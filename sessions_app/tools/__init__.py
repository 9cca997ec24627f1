"""The tools a model may call in a turn, registered once at start-up (SessionsAppConfig.ready).

A tool is one module in this package that calls `register(Tool(...))`: a name, a description and a
JSON schema of its arguments (what the model is offered, in the OpenAI tool-call format), and a
function that takes the caller's ToolContext and the validated arguments and returns text for the
model. `run_tool` never raises: a bad name, bad arguments, a ToolError or an unexpected failure
becomes an error result the model reads, and the run is recorded either way (ToolCallEvent).
"""

import importlib
import json
import logging
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jsonschema import Draft202012Validator, validators

from core.text import storable, storable_json

logger = logging.getLogger(__name__)

# JSON Schema counts 5.0 as an "integer"; a tool slicing or counting with it would fail on the float.
# Here an integer is a JSON number written without a fraction, so the model hears "5.0 is not of type
# 'integer'" and can send 5.
_ArgumentsValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)

# What a model reads back from one tool run, at most (a tool bounds its own output below this).
RESULT_MAX_CHARS = 16_000


class ToolError(Exception):
    """A tool refused or failed in a way the model should be told (e.g. no such file)."""


@dataclass(frozen=True)
class ToolContext:
    """Who the tool runs for: it may read that user's data and nobody else's."""

    user: object
    session_id: int


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # a JSON schema (an object) of the arguments
    function: Callable[[ToolContext, dict], str]
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        Draft202012Validator.check_schema(self.parameters)
        object.__setattr__(self, "validator", _ArgumentsValidator(self.parameters))

    def spec(self) -> dict:
        """The tool as offered to the model (OpenAI chat-completions `tools` item)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolRun:
    """One run, as recorded and as answered to the model."""

    call_id: str
    tool: str
    arguments: dict
    ok: bool
    result: str  # what the model reads (an error message when not ok)
    error: str
    latency_ms: int


_REGISTRY: dict[str, Tool] = {}
_SPECS: list[dict] | None = None  # tool_specs(), built once per registry


def register(tool: Tool) -> Tool:
    """Add a tool to the registry (once: a second tool of the same name is a programming error)."""
    global _SPECS
    if tool.name in _REGISTRY and _REGISTRY[tool.name] is not tool:
        raise RuntimeError(f"A tool named {tool.name!r} is already registered.")
    _REGISTRY[tool.name] = tool
    _SPECS = None
    return tool


def autodiscover() -> None:
    """Import every module of this package, so each registers its tool (called once, at start-up)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def registered() -> dict[str, Tool]:
    return dict(_REGISTRY)


def tool_specs() -> list[dict]:
    """Every registered tool as offered to the model, in name order (a stable prompt).

    Built once (the registry is filled at start-up) and shared by every call: read it, never change it.
    """
    global _SPECS
    if _SPECS is None:
        _SPECS = [_REGISTRY[name].spec() for name in sorted(_REGISTRY)]
    return _SPECS


def run_tool(*, context: ToolContext, call_id: str, name: str, arguments: str) -> ToolRun:
    """Run the tool the model asked for with the JSON `arguments` it wrote; never raises."""
    started = time.monotonic()
    parsed: dict = {}
    try:
        tool = _REGISTRY.get(name)
        if tool is None:
            raise ToolError(
                f"There is no tool named {name!r}; the tools are: {', '.join(sorted(_REGISTRY))}."
            )
        try:
            # What the model wrote may escape a NUL or a lone surrogate: the tool, and the turn's
            # record of the run, get them as U+FFFD (a jsonb value cannot hold them).
            parsed = storable_json(json.loads(arguments or "{}"))
        except ValueError as exc:
            parsed = _unparsed(arguments)
            raise ToolError(f"The arguments are not valid JSON ({exc}).") from None
        if not isinstance(parsed, dict):
            parsed = _unparsed(arguments)
            raise ToolError("The arguments must be a JSON object.")
        problems = sorted(tool.validator.iter_errors(parsed), key=lambda e: list(e.path))
        if problems:
            raise ToolError("Invalid arguments: " + "; ".join(_problem(p) for p in problems[:3]))
        result, ok, error = tool.function(context, parsed), True, ""
    except ToolError as exc:
        result, ok, error = f"Error: {exc}", False, str(exc)
    except Exception as exc:  # a bug in a tool must not break the turn: the model hears it failed
        logger.exception("tool failed", extra={"tool": name, "user_id": getattr(context.user, "pk", None)})
        result, ok, error = f"Error: the {name} tool failed unexpectedly.", False, type(exc).__name__
    result = result[:RESULT_MAX_CHARS]
    return ToolRun(
        call_id=storable(call_id),
        tool=storable(name[:64]),
        arguments=parsed,
        ok=ok,
        result=result,
        error=error[:500],
        latency_ms=max(0, round((time.monotonic() - started) * 1000)),
    )


def _unparsed(arguments: str) -> dict:
    """What the model wrote, when it is no JSON object: kept (its start) as the run's arguments."""
    return {"_unparsed": storable((arguments or "")[:1000])}


def _problem(error) -> str:
    where = ".".join(str(p) for p in error.path)
    return f"{where}: {error.message}" if where else error.message
