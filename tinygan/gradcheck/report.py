"""How ``gradcheck`` tells what it found: each failed check a ``Failure``, all of them in a
``GradcheckReport``, raised as a ``GradcheckError``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn


@dataclass(frozen=True)
class Failure:
    """One failed check: which check, the input blamed (None: the op as a whole), what happened,
    and the exception that ``fn`` or its backward raised, if one did (its traceback begins at the
    first frame outside the checker and the engine: the user's code)."""

    check: str
    input: int | None
    message: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"[{self.check}] {self.message}"


@dataclass
class GradcheckReport:
    """What ``gradcheck`` found; true when nothing failed.

    Attributes
    ----------
    failures : list of Failure
        Structural checks first (in the order they ran), then the numerical ones, input by input.
    notes : list of str
        What passed only after a closer look: a non-differentiable point where the analytic value
        lies between the one-sided derivatives, or a kink that a smaller step steps around.
    checked : list of int
        The positions of the inputs whose gradients were checked.
    """

    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.ok

    @property
    def blamed(self) -> list[int]:
        """The inputs named by at least one failure, in order."""
        return sorted({f.input for f in self.failures if f.input is not None})

    def __str__(self) -> str:
        inputs = ", ".join(str(i) for i in self.checked)
        if self.ok:
            head = f"gradcheck passed (inputs {inputs})"
        else:
            n = len(self.failures)
            head = f"gradcheck failed ({n} problem{'s' * (n > 1)}, inputs checked: {inputs}):"
        lines = [head, *(f"  {f}" for f in self.failures)]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one (or misbehaves).

    ``report`` holds every failure found (a ``GradcheckReport``). Where ``fn`` or its backward
    raised, the first such exception is the ``__cause__``, so a traceback shows the user's line.
    """

    __module__ = "tinygan.gradcheck"  # where users meet it (a traceback names it so)

    def __init__(self, report: GradcheckReport | str) -> None:
        if isinstance(report, str):
            report = GradcheckReport([Failure("gradcheck", None, report)])
        self.report = report
        super().__init__(str(report))


def raise_error(report: GradcheckReport) -> NoReturn:
    """Raise ``GradcheckError(report)``, chained to the first exception ``fn`` raised."""
    __tracebackhide__ = True
    cause = next((f.exception for f in report.failures if f.exception is not None), None)
    raise GradcheckError(report) from cause
