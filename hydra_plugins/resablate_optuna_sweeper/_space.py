"""Hydra's override grammar -> Optuna distributions, and a trial's parameters -> the overrides of its job.

Semantics follow Hydra's own sweeps, so that `python app.py -m key=range(1,4)` means the same values under the basic and
this sweeper:
- `choice(a, b, ...)` and the command-line list `a,b,...` -> CategoricalDistribution (config-group options too;
  `glob(*)` lists a group's options).
- `range(a, b[, step])` -> the values Hydra would enumerate (b EXCLUDED): IntDistribution(low, last, step) for ints,
  FloatDistribution(low, last, step) for floats (`float(range(1,4))` is a float range, `int(range(1.0,4.0))` an int
  one, as Hydra casts them). hydra-optuna-sweeper let TPE sample b. `shuffle(range(...))` -> CategoricalDistribution
  of those values (Hydra's shuffled enumeration: a choice among them, with no order).
- `interval(a, b)` -> FloatDistribution(a, b): Hydra's interval is a float interval, `interval(0,1)` included.
  `int(interval(a, b))` -> IntDistribution(a, b) (both ends included, like optuna's suggest_int), its ends cast as
  Hydra casts them (`int(interval(0.5,5))` is 0..5).
- `tag(log, interval(...))` / `tag(log, range(a, b))` -> log scale.
- a plain value -> a fixed override passed unchanged to every job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hydra._internal.grammar.utils import escape_special_characters
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Quote, QuotedString, Transformer
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from .config import OptunaSweeperError

KNOWN_TAGS = ("log",)


@dataclass
class Param:
    """One swept key: its optuna name, the key element of its override (with +/++ and @package) and distribution."""

    name: str
    key: str
    distribution: BaseDistribution
    tokens: dict[Any, str] | None = None  # categorical value -> its text in an override

    def override(self, value: Any) -> str:
        """`key=value` for a job, in Hydra's grammar (strings escaped or quoted as the user wrote them)."""
        if self.tokens is not None:
            if value not in self.tokens:
                raise OptunaSweeperError(f"{value!r} is not a choice of sweep parameter {self.name!r}")
            return f"{self.key}={self.tokens[value]}"
        return f"{self.key}={format_number(value)}"


@dataclass
class SearchSpace:
    params: dict[str, Param] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)  # plain overrides, passed as written to every job
    order: list[str] = field(default_factory=list)  # every key, fixed or swept, in the order the overrides gave them

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: p.distribution for name, p in self.params.items()}

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """The task overrides of one job, one per key, in the order the sweep's params and command line gave them (as
        Hydra's basic sweeper keeps it: a job's `hydra.overrides.task` and `override_dirname` read the same)."""
        missing = sorted(set(self.params) - set(values))
        if missing:
            raise OptunaSweeperError(f"trial has no value for sweep parameter(s) {missing}")
        swept = {name: p.override(values[name]) for name, p in self.params.items()}
        fixed = iter(self.fixed)
        ordered = [swept.pop(name) if name in self.params else next(fixed) for name in self.order]
        return [*ordered, *fixed, *swept.values()]  # keys outside `order` (a space built by hand) last


def format_number(value: Any) -> str:
    """An int or float as the override parser reads it back exactly (repr round-trips floats: 1e-05, 0.1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptunaSweeperError(f"expected a number for a numeric sweep parameter, got {value!r}")
    return str(value) if isinstance(value, int) else repr(float(value))


def parse_search_space(lines: Sequence[str], config_loader: Any = None) -> SearchSpace:
    """Parse `key=value` lines (sweeper params first, then the command line: later lines win on the same key)."""
    parser = OverridesParser.create(config_loader=config_loader)
    merged: dict[str, Override] = {}
    for line in lines:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as err:
            raise OptunaSweeperError(
                f"Optuna sweeper: cannot parse {line!r}: {_brief(err)}. Valid sweeps: choice(a,b,...), a,b,..., "
                "range(start,stop[,step]), interval(low,high), tag(log,interval(low,high)); or a plain value"
            ) from err
        ident = override.key_or_group if override.package is None else f"{override.key_or_group}@{override.package}"
        merged.pop(ident, None)  # a later line replaces an earlier one and takes its place at the end
        merged[ident] = override

    space = SearchSpace()
    for name, override in merged.items():
        space.order.append(name)
        if not override.is_sweep_override():
            assert override.input_line is not None
            space.fixed.append(override.input_line)
            continue
        try:
            space.params[name] = _param(name, override)
        except OptunaSweeperError:
            raise
        except (ValueError, TypeError, HydraException) as err:
            raise OptunaSweeperError(f"Optuna sweeper: bad sweep {override.input_line!r}: {err}") from err
    return space


def _param(name: str, override: Override) -> Param:
    value = override.value()
    tags = set(getattr(value, "tags", set()) or set())
    unknown = sorted(tags - set(KNOWN_TAGS))
    if unknown:
        raise OptunaSweeperError(
            f"Optuna sweeper: unknown tag(s) {unknown} in {override.input_line!r}; valid tags: {list(KNOWN_TAGS)}"
        )
    log = "log" in tags
    key = override.get_key_element()

    if override.is_choice_sweep():
        if log:
            raise OptunaSweeperError(
                f"Optuna sweeper: tag(log, ...) needs an interval or a range: {override.input_line!r}"
            )
        tokens: dict[Any, str] = {}
        for raw in override.sweep_iterator(transformer=Transformer.identity):
            tokens.setdefault(_choice_value(raw), _str_token(raw) if isinstance(raw, str) else Transformer.str(raw))
        return Param(name, key, CategoricalDistribution(list(tokens)), tokens)

    if override.is_range_sweep():
        rs = value
        values = list(rs.range())  # Hydra's own enumeration: stop excluded, Decimal steps for floats
        if not values:
            raise OptunaSweeperError(f"Optuna sweeper: {override.input_line!r} is an empty range")
        if rs.shuffle:
            if log:
                raise OptunaSweeperError(
                    f"Optuna sweeper: tag(log, shuffle(...)) has no scale: {override.input_line!r}")
            return Param(name, key, CategoricalDistribution(values), {v: format_number(v) for v in values})
        step = abs(rs.step)
        if all(isinstance(v, int) for v in values) and isinstance(rs.step, int):
            if log and step != 1:
                raise OptunaSweeperError(f"Optuna sweeper: tag(log, range(...)) needs step 1: {override.input_line!r}")
            return Param(name, key, IntDistribution(min(values), max(values), log=log, step=1 if log else step))
        if log:
            raise OptunaSweeperError(
                f"Optuna sweeper: a float range has a step, which a log scale cannot have: {override.input_line!r}; "
                "use tag(log, interval(a, b))"
            )
        # The grid low, low + step, ... computed in decimal, so optuna does not shift `high` by a rounding error.
        d_step, last = Decimal(str(step)), len(values) - 1
        if rs.step > 0:
            low = Decimal(str(rs.start))
            high = low + last * d_step
        else:
            high = Decimal(str(rs.start))
            low = high - last * d_step
        return Param(name, key, FloatDistribution(float(low), float(high), step=float(d_step)))

    if override.is_interval_sweep():
        low, high = value.start, value.end
        if not low < high:
            raise OptunaSweeperError(f"Optuna sweeper: interval needs low < high: {override.input_line!r}")
        if all(isinstance(end, int) and not isinstance(end, bool) for end in (low, high)):  # int(interval(...))
            return Param(name, key, IntDistribution(low, high, log=log))
        return Param(name, key, FloatDistribution(float(low), float(high), log=log))

    raise OptunaSweeperError(f"Optuna sweeper: unsupported sweep {override.input_line!r}")


def param_from_spec(name: str, spec: Mapping[str, Any]) -> Param:
    """hydra-optuna-sweeper's older `search_space` entry, `{type: int|float|categorical, low, high, step, log,
    choices}`, as a parameter."""
    kind = str(spec.get("type", "")).lower()
    try:
        if kind == "categorical":
            choices = list(spec.get("choices") or [])
            tokens = {c: (_str_token(c) if isinstance(c, str) else Transformer.str(c)) for c in choices}
            return Param(name, name, CategoricalDistribution(choices), tokens)
        step, log = spec.get("step"), bool(spec.get("log", False))
        if kind == "int":
            return Param(name, name, IntDistribution(int(spec["low"]), int(spec["high"]), log=log,
                                                     step=int(step) if step else 1))
        if kind == "float":
            return Param(name, name, FloatDistribution(float(spec["low"]), float(spec["high"]), log=log,
                                                       step=float(step) if step else None))
    except (KeyError, TypeError, ValueError) as err:
        raise OptunaSweeperError(f"Optuna sweeper: bad search_space entry {name}: {dict(spec)} ({err})") from None
    raise OptunaSweeperError(f"Optuna sweeper: search_space entry {name} has type {kind!r}; valid types: int, float, "
                             "categorical")


def add_search_space(space: SearchSpace, search_space: Mapping[str, Mapping[str, Any]]) -> None:
    """Put hydra-optuna-sweeper's older `search_space` entries first in `space`; a key that `space` already sweeps or
    sets (hydra.sweeper.params and the command line) keeps its value there."""
    taken = {p.key.lstrip("+") for p in space.params.values()} | {f.split("=", 1)[0].lstrip("+~") for f in space.fixed}
    extra = {name: param_from_spec(name, spec) for name, spec in search_space.items() if name not in taken}
    space.params = {**extra, **space.params}

def _str_token(text: str) -> str:
    """A string choice as override text that parses back to the same string (quoted if escaping is not enough:
    quotes inside, or text that would read as a number, bool or null)."""
    escaped = escape_special_characters(text)
    try:
        (back,) = OverridesParser.create().parse_overrides([f"k={escaped}"])
        if back.value() == text and isinstance(back.value(), str):
            return escaped
    except HydraException:
        pass
    return QuotedString(text=text, quote=Quote.single).with_quotes()


def _choice_value(raw: Any) -> Any:
    """What optuna stores for a choice: the value itself for None/bool/int/float/str, else its override text."""
    if raw is None or isinstance(raw, (bool, int, float, str)):
        return raw
    if isinstance(raw, QuotedString):
        return raw.text
    return Transformer.str(raw)  # lists and dicts: optuna categoricals hold only scalars


def default_study_name(
    task_name: str,
    params: Mapping[str, BaseDistribution],
    directions: Sequence[str],
    fixed_overrides: Sequence[str] = (),
) -> str:
    """`<task>-<12 hex>`: the same command (task, search space, directions, fixed overrides) names the same study.

    Order of params and of fixed overrides does not matter; any change of a distribution, a direction or a fixed
    override gives another study, so a resumed study never mixes incompatible trials.
    """
    payload = {
        "task": task_name,
        "params": {name: json.loads(distribution_to_json(d)) for name, d in sorted(params.items())},
        "directions": [str(d).lower() for d in directions],
        "fixed": sorted(fixed_overrides),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return f"{task_name}-{digest}"


def _brief(err: Exception) -> str:
    """Hydra's parse error without its first line (which repeats the input) and its documentation link."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip() and not ln.startswith("See https://")]
    return "; ".join(lines[1:] or lines) or type(err).__name__


def first_line(err: Exception) -> str:
    """The first line of an error's message (or its type's name where the message is empty), for one-line errors."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
