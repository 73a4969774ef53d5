"""A small table type rendered as aligned text, GitHub markdown, LaTeX (booktabs) or CSV.

The comparison command prints these; the paper's generator writes the LaTeX form.
Cells are plain strings (already formatted); LaTeX escaping happens here, so no
caller writes LaTeX by hand. Notes become footnotes under the table.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

FORMATS = ("text", "markdown", "latex", "csv")
MISSING = "—"

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#\allowbreak{}", "_": r"\_",
    "/": r"/\allowbreak{}",  # long paths in narrow columns may break after / and #
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "—": "---", "–": "--", "Δ": r"$\Delta$", "λ": r"$\lambda$", "²": r"\textsuperscript{2}",
    "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "±": r"$\pm$", "↓": r"$\downarrow$", "↑": r"$\uparrow$",
    "→": r"$\rightarrow$", "·": r"$\cdot$", "…": r"\ldots{}", "−": "-",
}


def _latex_char(ch: str) -> str:
    if ch in _LATEX_SPECIAL:
        return _LATEX_SPECIAL[ch]
    if ord(ch) < 128 or (ch.isalpha() and ord(ch) < 0x250):  # ASCII, Latin letters (T1 fonts)
        return ch
    return r"\texttt{[U+" + f"{ord(ch):04X}" + "]}"  # anything else, e.g. U+FFFD in a broken caption


def latex_escape(text: str) -> str:
    """Escapes LaTeX specials, maps the few symbols the tables use, and writes any other
    non-Latin character as its code point (pdflatex has no glyph for it)."""
    return "".join(_latex_char(ch) for ch in str(text))


def fmt(value: Optional[float], digits: int = 4, signed: bool = False, unit: str = "") -> str:
    """A number with ``digits`` decimals; None/NaN -> the missing mark."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text + unit


@dataclass
class Table:
    """Rows of string cells under a header.

    Args:
        columns: header cells.
        rows: one list of cells per row (same length as ``columns``).
        title: caption (LaTeX) / heading (text, markdown).
        notes: footnotes printed under the table.
        align: LaTeX column alignment, e.g. ``"llrrr"`` (default: first left, rest right).
        spans: rows (index) that span all columns (group headings), e.g. "not run" lines.
        rules: rows (index) preceded by a horizontal rule (LaTeX), separating groups.
    """

    columns: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""
    notes: list[str] = field(default_factory=list)
    align: Optional[str] = None
    spans: set[int] = field(default_factory=set)
    rules: set[int] = field(default_factory=set)

    def add_rule(self) -> None:
        """Separates the rows added next from the ones before (LaTeX ``\\midrule``)."""
        if self.rows:
            self.rules.add(len(self.rows))

    def add(self, cells: Sequence[object]) -> None:
        cells = [MISSING if c is None else str(c) for c in cells]
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns: {cells}")
        self.rows.append(cells)

    def add_span(self, text: str) -> None:
        """A row with one cell across all columns (e.g. "linformer: not run: ...")."""
        self.spans.add(len(self.rows))
        self.rows.append([text] + [""] * (len(self.columns) - 1))

    def render(self, form: str = "text", label: str = "") -> str:
        if form not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {form!r}")
        return {"text": self._text, "markdown": self._markdown, "csv": self._csv,
                "latex": lambda: self._latex(label)}[form]()

    # ------------------------------------------------------------ renderers
    def _text(self) -> str:
        plain = [r for i, r in enumerate(self.rows) if i not in self.spans]
        widths = [max([len(c)] + [len(r[j]) for r in plain]) for j, c in enumerate(self.columns)]
        line = lambda cells: "  ".join(c.ljust(w) if j == 0 else c.rjust(w)  # noqa: E731
                                       for j, (c, w) in enumerate(zip(cells, widths)))
        out = [self.title, ""] if self.title else []
        out += [line(self.columns), "  ".join("-" * w for w in widths)]
        out += [r[0] if i in self.spans else line(r) for i, r in enumerate(self.rows)]
        out += [f"  {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def _markdown(self) -> str:
        esc = lambda c: c.replace("|", r"\|")  # noqa: E731
        out = [f"**{self.title}**", ""] if self.title else []
        out += ["| " + " | ".join(map(esc, self.columns)) + " |", "|" + "---|" * len(self.columns)]
        for i, r in enumerate(self.rows):
            cells = [r[0]] + [""] * (len(r) - 1) if i in self.spans else r
            out.append("| " + " | ".join(map(esc, cells)) + " |")
        out += [""] + [f"{n}  " for n in self.notes] if self.notes else []
        return "\n".join(out) + "\n"

    def _csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buffer.getvalue()

    def _latex(self, label: str) -> str:
        # Paragraph columns are set ragged-right (long names and paths do not justify well).
        align = re.sub(r"p\{", r">{\\raggedright\\arraybackslash}p{", self.align or "l" + "r" * (len(self.columns) - 1))
        n = len(self.columns)
        # [H] (float package): generated tables stay where the text puts them.
        out = [r"\begin{table}[H]", r"\centering", r"\small"]
        if self.title:
            out.append(r"\caption{" + latex_escape(self.title) + "}")
        if label:
            out.append(r"\label{" + label + "}")
        out += [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
                r"\begin{tabular}{" + align + "}", r"\toprule",
                " & ".join(r"\textbf{" + latex_escape(c) + "}" for c in self.columns) + r" \\", r"\midrule"]
        for i, r in enumerate(self.rows):
            if i in self.rules:
                out.append(r"\midrule")
            if i in self.spans:
                span = r"{>{\raggedright\arraybackslash}p{0.9\linewidth}}"
                out.append(r"\multicolumn{" + str(n) + "}" + span + r"{\emph{" + latex_escape(r[0]) + r"}} \\")
            else:
                out.append(" & ".join(latex_escape(c) for c in r) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}}"]
        if self.notes:
            out.append(r"\par\smallskip\begin{minipage}{\linewidth}\footnotesize")
            out += [latex_escape(note) + r"\par" for note in self.notes]
            out.append(r"\end{minipage}")
        out.append(r"\end{table}")
        return "\n".join(out) + "\n"
