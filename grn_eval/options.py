"""`Opt`: one option's type and allowed values, as declared by suites (grn_eval/suite.py) and metrics
(grn_eval/metrics/*.py). A module of its own so that metric modules can declare their options without
importing the suite loader, which reads the metric registry (no import cycle)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Opt:
    """An option's type and allowed values. `min` / `max` bound a number, or a list's length. A bound
    may name another option (a sibling, or the top-level `n_samples`): its value in the suite, else its
    default. `default` is what the code that consumes the option uses when it is absent; it is never
    written into the suite (the suite hash is of what the file says)."""

    type: type
    default: object = None
    min: float | str | None = None
    max: float | str | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple | None = None
    pattern: str | None = None  # strings: must match in full
    item: Opt | None = None  # lists: what each element is
    unique: bool = False  # lists: no element twice
    increasing: bool = False  # lists: strictly increasing
    required: bool = False
    why: str = ""  # appended to the allowed range

    def bound(self, which: str, ctx: dict):
        b = getattr(self, which)
        b = ctx.get(b) if isinstance(b, str) else b
        return b if isinstance(b, (int, float)) and not isinstance(b, bool) else None

    def allowed(self, ctx: dict) -> str:
        def side(which, strict):
            b = getattr(self, which)
            op = {"min": ">", "max": "<"}[which] + ("" if strict else "=")
            return f"{op} {b} (= {ctx.get(b)})" if isinstance(b, str) and b in ctx else f"{op} {b}"

        sides = [side(w, getattr(self, f"{w}_exclusive")) for w in ("min", "max") if getattr(self, w) is not None]
        if self.type is list:
            length = str(self.min) if self.min is not None and self.min == self.max else " and ".join(sides)
            text = "a list" + (f" of length {length}" if length else "")
            text += f", each {self.item.allowed(ctx)}" if self.item else ""
            text += ", no duplicates" if self.unique else ""
            text += ", strictly increasing" if self.increasing else ""
        elif self.choices is not None:
            text = f"one of {list(self.choices)}"
        else:
            text = self.type.__name__ + (f" matching {self.pattern}" if self.pattern else "")
            text += " " + " and ".join(sides) if sides else ""
        return text + (f" ({self.why})" if self.why else "")


SHA256 = Opt(str, pattern="[0-9a-f]{64}", why="a sha256 in lowercase hex")  # a file pin, wherever one is taken
