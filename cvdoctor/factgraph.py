"""The fact graph: every computed fact of every command, gathered once per context and shared.

A fact is a function ``(ctx) -> value`` registered with ``@fact("name", needs=[...])``. It may ask
the context for the facts it declares (``ctx.fact("gpu")`` inside the ``gpu_probe`` fact): the
context owns the memo, so each fact is computed at most once per context, whoever asks first.

- Contexts that gather in parallel (``cvdoctor env``: subprocess probes that take seconds) start
  every fact a run needs in its own thread when the run is prepared; a fact that needs another
  waits for it.
- Other contexts (``cvdoctor model``: forward passes on the user's model) compute a fact in the
  calling thread on first use.
- Recorded facts (``Context(recorded={...})``, the hidden CLI option ``--facts FILE.json``)
  replace facts by name: the seam for GPUs, aarch64 and drivers the machine does not have.
- A fact that raises is stored as a `FactError` naming the fact; the checks that read it become
  `error` findings that say which fact broke, and the other checks still run.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


@dataclass(frozen=True)
class FactSpec:
    name: str
    func: Callable[[Any], Any]
    needs: tuple[str, ...]
    module: str


_FACTS: dict[str, FactSpec] = {}


def fact(name: str, *, needs: Iterable[str] = ()):
    """Register a fact: ``@fact("gpu_probe", needs=["gpu"]) def gather(ctx): ...``."""
    def wrap(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        spec = FactSpec(name, func, tuple(needs), func.__module__)
        old = _FACTS.get(name)
        if old is not None and (old.module, old.func.__qualname__) != (spec.module,
                                                                       func.__qualname__):
            raise ValueError(f"fact {name!r} is registered twice ({old.module} and {spec.module})")
        _FACTS[name] = spec
        return func

    return wrap


def fact_spec(name: str) -> FactSpec | None:
    return _FACTS.get(name)


def load_fact_modules(packages: Iterable[str]) -> None:
    """Import the modules (or every module of the packages) that register facts."""
    for name in packages:
        module = importlib.import_module(name)
        for sub in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if not sub.name.startswith("_"):
                importlib.import_module(f"{name}.{sub.name}")


class FactError(RuntimeError):
    """Raised to a reader when the fact it asked for could not be gathered."""

    def __init__(self, name: str, cause: BaseException):
        super().__init__(f"the fact {name!r} could not be gathered: "
                         f"{type(cause).__name__}: {cause}")
        self.fact = name
        self.cause = cause


class UndeclaredFact(RuntimeError):
    """A check or fact read a fact it does not declare in `needs` (a bug in cvdoctor)."""


class CyclicFacts(RuntimeError):
    pass


@dataclass
class FactTiming:
    seconds: float = 0.0
    ok: bool = True
    error: str | None = None
    recorded: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seconds": round(self.seconds, 4), "ok": self.ok}
        if self.error:
            out["error"] = self.error
        if self.recorded:
            out["recorded"] = True
        return out


class Context:
    """Owns the facts of one run (or of several runs on the same subject: the pytest plugin's
    generated items share one context).

    Subclasses set `fact_packages` (where their facts are registered) and `parallel`, and keep
    the run's options in `self.options`; facts read them with `ctx.option(name, default)`.
    """

    fact_packages: tuple[str, ...] = ()
    parallel = False
    target_kind: str | None = None  # None: the command's ordinary targets (see `applies`)

    def __init__(self, options: Any = None, recorded: dict[str, Any] | None = None):
        self.options = options
        self.recorded = dict(recorded or {})
        self.timings: dict[str, FactTiming] = {}
        self._futures: dict[str, Future] = {}
        self._lock = threading.RLock()
        self._loaded = False

    def applies(self, check: Any) -> bool | str:
        """Whether `check` (a CheckSpec) is part of a run on this context: True runs it, False
        leaves it out of the report, a string makes it one `skip` finding with that reason.
        By default a check runs on the kinds of target it declares (`targets=`; none: the
        command's ordinary targets), and an opt-in check only when its option is set."""
        if self.target_kind not in (check.targets or (None,)):
            return self.not_for_this_target(check)
        return self.opted_in(check)

    def opted_in(self, check: Any) -> bool:
        """An opt-in check runs only when one of its options (or model-file hints) is set."""
        names = getattr(check, "opt_in_names", ())
        return not names or any(self.option(name) for name in names)

    def not_for_this_target(self, check: Any) -> bool | str:
        """A check of another kind of target stays out of the report, unless the user asked for
        it by its option (`--ddp 2` on a YOLO set-up): then one skip says it does not apply."""
        names = getattr(check, "opt_in_names", ())
        asked = [name for name in names if self.option(name)]
        if not asked:
            return False
        flag = "--" + asked[0].replace("_", "-")
        return (f"not checked on a {self.target_kind or 'this kind of'} target: {flag} asks for "
                "it on a plain PyTorch model (a model file or a zoo spec)")

    # --- options ----------------------------------------------------------------------------
    def option(self, name: str, default: Any = None) -> Any:
        value = getattr(self.options, name, None) if self.options is not None else None
        return default if value is None else value

    # --- the graph --------------------------------------------------------------------------
    def _spec(self, name: str) -> FactSpec | None:
        spec = _FACTS.get(name)
        if spec is None and not self._loaded:
            load_fact_modules(self.fact_packages)
            self._loaded = True
            spec = _FACTS.get(name)
        return spec

    def closure(self, names: Iterable[str]) -> list[str]:
        """`names` and everything they need, dependencies first; raises CyclicFacts."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise CyclicFacts(" -> ".join(path + (name,)))
            state[name] = 1
            spec = None if name in self.recorded else self._spec(name)
            for dep in spec.needs if spec else ():
                visit(dep, path + (name,))
            state[name] = 2
            order.append(name)

        for n in names:
            visit(n, ())
        return order

    def prepare(self, names: Iterable[str]) -> None:
        """Make sure the facts a run reads can be gathered; in a parallel context, start them
        (and what they need) now, each in its own thread, so slow probes overlap."""
        order = self.closure(names)
        if not self.parallel:
            return
        for name in order:
            self._start(name, in_thread=True)

    def _start(self, name: str, in_thread: bool) -> tuple[Future, bool]:
        """The future of `name`, and whether this call must compute it (inline)."""
        with self._lock:
            fut = self._futures.get(name)
            if fut is not None:
                return fut, False
            fut = Future()
            self._futures[name] = fut
        if name in self.recorded:
            self.timings[name] = FactTiming(recorded=True)
            fut.set_result(self.recorded[name])
            return fut, False
        if in_thread:
            threading.Thread(target=self._compute, args=(name, fut), daemon=True,
                             name=f"cvdoctor-fact-{name}").start()
            return fut, False
        return fut, True

    def _compute(self, name: str, fut: Future) -> None:
        start = time.perf_counter()
        timing = FactTiming()
        try:
            spec = self._spec(name)
            if spec is None:
                raise KeyError(f"no fact named {name!r}")
            value = spec.func(_FactView(self, spec))
        except BaseException as exc:  # noqa: BLE001 - stored for the readers, never lost
            timing.ok, timing.error = False, f"{type(exc).__name__}: {exc}"
            err = exc if isinstance(exc, FactError) else FactError(name, exc)
            timing.seconds = time.perf_counter() - start
            self.timings[name] = timing
            fut.set_exception(err)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return  # a SystemExit too: the user's code calling sys.exit() fails the fact
        timing.seconds = time.perf_counter() - start
        self.timings[name] = timing
        fut.set_result(value)

    def fact(self, name: str) -> Any:
        """The gathered (or recorded) value of `name`; raises FactError if it failed."""
        fut, mine = self._start(name, in_thread=False)
        if mine:
            self._compute(name, fut)
        return fut.result()

    def optional_fact(self, name: str) -> Any:
        """A fact whose own check reports its breakage: a failure reads as empty facts."""
        try:
            return self.fact(name) or {}
        except FactError:
            return {}

    def fact_timings(self) -> dict[str, dict[str, Any]]:
        return {name: t.to_dict() for name, t in sorted(self.timings.items())}

    def view(self, allowed: Iterable[str], owner: str) -> "ContextView":
        return ContextView(self, allowed, owner)

    def close(self) -> None:
        """Threads of a parallel context are daemons; nothing is left to join."""


class ContextView:
    """What one check (or fact) sees of a context: everything, except that it may read only the
    facts it declares. Keeps `needs=` true: reading an undeclared fact is a bug, reported."""

    def __init__(self, ctx: Context, allowed: Iterable[str], owner: str):
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_allowed", frozenset(allowed))
        object.__setattr__(self, "_owner", owner)

    def _check(self, name: str) -> None:
        if name not in self._allowed:
            raise UndeclaredFact(f"{self._owner} reads the fact {name!r} but does not declare it "
                                 f"in needs= ({', '.join(sorted(self._allowed)) or 'none'})")

    def fact(self, name: str) -> Any:
        self._check(name)
        return self._ctx.fact(name)

    def optional_fact(self, name: str) -> Any:
        self._check(name)
        return self._ctx.optional_fact(name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._ctx, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("checks and facts read the context; they do not change it")

    @property
    def context(self) -> Context:
        """The context behind this view (for code that hands it on, e.g. to a probe)."""
        return self._ctx


class _FactView(ContextView):
    def __init__(self, ctx: Context, spec: FactSpec):
        super().__init__(ctx, spec.needs, f"fact {spec.name!r}")


@dataclass
class Options:
    """A plain bag of option values for contexts built from a command declaration."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None
