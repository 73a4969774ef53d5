"""The paper's generated tables and figures (``paper/generated/``) from the two registries, for
``make paper``: every source is checked before anything is written, a run without results is a
"not run: <needs>" row, and the output is deterministic (docs/experiments.md, "The report").
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from taco_plus.experiments.compare import MISSING, compare, latex_table, render
from taco_plus.experiments.compare import latex_escape as _latex
from taco_plus.experiments.record import RESULTS_DIR, load_recorded, recorded, relative, require
from taco_plus.experiments.registry import Run, load_runs
from taco_plus.results.format import curve, list_references, load_curve
from taco_plus.results.plot import plot_rd
from taco_plus.results.provenance import file_sha256

GENERATED_DIR = Path("paper/generated")
BENCH_COMMAND = "python -m taco_plus.bench.attention --csv experiments/results/bench/attention.csv"
DATASET_LABELS = {"kodak": "Kodak (24 images)", "skimage_quickstart": "Quickstart photos (8 scikit-image photos)"}


def _dataset(run: Run) -> str:
    """The evaluation dataset of a registered run: its ``data=`` override, else eval.yaml's Kodak."""
    return next((o.split("=", 1)[1] for o in reversed(run.eval) if o.startswith("data=")), "kodak")


def runs_frame(runs: dict[str, Run], broken: dict[str, str], root: Path) -> pd.DataFrame:
    """Every registered run: base, what it changes, rate points, status (``list`` and the report)."""
    done = recorded(root)
    status = {name: f"recorded ({len(load_recorded(name, root).labels)} points)" if name in done
              else "not run: needs " + "; ".join(run.needs) if run.needs else "not recorded yet"
              for name, run in runs.items()}
    rows = [(name, run.base or MISSING, run.change_text(), len(run.lambdas), status[name]) for name, run in runs.items()]
    rows += [(name, MISSING, MISSING, MISSING, f"does not compose: {err}") for name, err in broken.items()]
    return pd.DataFrame(rows, columns=["run", "base", "what it changes", "λ", "status"])


def dataset_section(dataset: str, names: list[str], runs: dict[str, Run], root: Path, out: Path) -> str:
    done = recorded(root)
    label = DATASET_LABELS.get(dataset, dataset)
    slug = dataset.replace("_", "-")
    with_results = [n for n in names if n in done]
    body = [f"\\subsection{{{_latex(label)}}}\\label{{sec:results-{slug}}}"]
    references = ("all",) if dataset == "kodak" else ()  # the shipped curves are Kodak's
    if with_results or references:
        titles = {n: runs[n].title if n in runs else n for n in with_results}
        curves = [dict(load_recorded(n, root).results, name=titles[n]) for n in with_results]
        plot_rd(curves, out / f"rd_{dataset}.png", references=references, title=f"Rate-distortion on {label}")
        caption = (f"Rate-distortion on {label}: recorded runs (solid): {', '.join(titles.values()) or 'none yet'}."
                   + (" Shipped reference curves dashed; the released-TACO LPIPS curves use the reference LPIPS "
                      "convention." if references else ""))
        body += ["\\begin{figure}[H]\\centering", f"\\includegraphics[width=\\linewidth]{{generated/rd_{dataset}.png}}",
                 f"\\caption{{{_latex(caption)}}}\\label{{fig:rd-{slug}}}", "\\end{figure}"]
    if with_results:
        curves, anchor, summary, notes, points = compare(with_results, root, labels=titles)
        body.append(render(summary, "latex", notes, f"{label}: BD-rate against {anchor.label} (pchip); negative "
                                                    "saves bits", f"tab:summary-{slug}"))
        body.append(render(points, "latex", caption=f"{label}: every rate point (times in seconds)",
                           label=f"tab:points-{slug}"))
    pending = [n for n in names if n not in done]
    if pending:
        body.append(f"\\noindent Not recorded yet (Table~\\ref{{tab:runs}} says why): {_latex(', '.join(pending))}.\n")
    return "\n".join(body) + "\n"


def sensitivity_table(runs: dict[str, Run], root: Path) -> str:
    names, rows = recorded(root), []
    for name in names:
        run = load_recorded(name, root)
        for label in run.labels:
            path = run.path / "points" / label / "sensitivity" / "sensitivity.csv"
            for r in pd.read_csv(path).to_dict("records") if path.is_file() else []:
                if r["caption"] != "real":
                    rows.append({"run": name, "point": label, "caption": r["caption"], "bpp": r["bpp"],
                                 "Δbpp (%)": r["delta_bpp_pct"], "ΔPSNR (dB)": r["delta_psnr"],
                                 "ΔLPIPS": r["delta_lpips"], "ΔCLIP": r["delta_clip_score"]})
    real, empty = load_curve("taco_released_lpips_ref"), load_curve("taco_released_empty_caption_lpips_ref")
    (bpp, lpips_real), (_, lpips_empty) = curve(real, "lpips"), curve(empty, "lpips")
    for lam, b, lr, le in zip(real["meta"]["lambdas"], bpp, lpips_real, lpips_empty):
        rows.append({"run": "TACO released (third party, ref. LPIPS)", "point": f"λ {lam:g}", "caption": "empty",
                     "bpp": b, "ΔLPIPS": le - lr})
    frame = pd.DataFrame(rows)
    formats = {"bpp": "{:.4f}", "Δbpp (%)": "{:+.2f}", "ΔPSNR (dB)": "{:+.3f}", "ΔLPIPS": "{:+.4f}", "ΔCLIP": "{:+.2f}"}
    for column, form in formats.items():
        frame[column] = [MISSING if pd.isna(v) else form.format(v) for v in frame.get(column, [None] * len(frame))]
    pending = [n for n, r in runs.items() if "caption_sensitivity=true" in r.eval and n not in names]
    text = latex_table(frame, "Caption sensitivity: coding each image with an empty caption or another image's "
                              "caption, minus coding it with its own (means of per-image differences)",
                       "tab:sensitivity", "lllrrrrr")
    return text + (f"\\noindent Not recorded yet: {_latex(', '.join(pending))}.\n" if pending else "")


def attention_section(csv_path: Path, out: Path) -> str:
    from taco_plus.bench import report as bench_report

    rows = pd.read_csv(csv_path)
    adapter = rows[rows.part == "adapter"].assign(image=lambda d: d.width.astype(str) + "×" + d.height.astype(str))
    table = adapter.pivot_table(index=["image", "tokens"], columns="variant", values=["fwd_ms", "gflops", "fwd_bwd_ms"],
                                sort=False)
    table.columns = [f"{variant} {what.replace('_', ' ')}" for what, variant in table.columns]
    for column in table.columns:  # ms to 0.1, GFLOPs to 0.01
        table[column] = [MISSING if pd.isna(v) else f"{v:.{2 if 'gflops' in column else 1}f}" for v in table[column]]
    table = table.reset_index()
    log = csv_path.with_suffix(".log")
    conditions = log.read_text(encoding="utf-8").splitlines()[0].lstrip("# ") if log.is_file() else ""
    text = latex_table(table, "Text adapter cost (fwd = forward ms, fwd bwd = forward and backward ms at the training "
                              f"crop, gflops = forward GFLOPs), official sizes, random weights; {conditions}",
                       "tab:attention")
    bench_report.plot(rows.to_dict("records"), out / "attention.png")
    lines = bench_report.conclusions(rows.to_dict("records"))[1:]
    return text + "\\begin{itemize}\\small\n" + "".join(f"\\item{{}} {_latex(line)}\n" for line in lines) + "\\end{itemize}\n"


def build_report(results: Path = RESULTS_DIR, out: Path = GENERATED_DIR) -> list[Path]:
    """Writes every generated file into ``out``; returns their paths."""
    root, out = Path(results), Path(out)
    done = recorded(root)
    bench = require(root / "bench" / "attention.csv", BENCH_COMMAND)
    sources = [bench, *list_references().values()]
    for name in done:  # every recorded file must be there before anything is written
        run = load_recorded(name, root)
        sources += [run.path / "results.json", run.path / "provenance.json", *run.files()]
    runs, broken = load_runs()
    out.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.is_file() and path.suffix in (".tex", ".png", ".json"):
            path.unlink()
    groups: dict[str, list[str]] = {}
    for name, run in sorted(runs.items(), key=lambda kv: (kv[1].base is not None, kv[0])):  # anchors first
        groups.setdefault(_dataset(run), []).append(name)
    for name in done:
        if name not in runs:
            groups.setdefault(load_recorded(name, root).dataset, []).append(name)
    texts = {
        "runs.tex": latex_table(runs_frame(runs, broken, root), "The registered runs "
                                "(taco_plus/configs/experiment/*.yaml); commands: python -m taco_plus.experiments show "
                                "NAME", "tab:runs", "p{3.6cm}p{2.4cm}p{4.4cm}rp{4cm}"),
        "results.tex": "\n".join(dataset_section(d, names, runs, root, out) for d, names in groups.items()),
        "sensitivity.tex": sensitivity_table(runs, root),
        "attention.tex": attention_section(bench, out),
        "macros.tex": "".join(f"\\newcommand{{\\{k}}}{{{v}}}\n" for k, v in (
            ("NumRuns", len(runs) + len(broken)), ("NumRecorded", len([n for n in done if n in runs])),
            ("RecordedRuns", _latex(", ".join(n for n in done if n in runs)) or "none"))),
    }
    for name, text in texts.items():
        (out / name).write_text(f"% Generated by `python -m taco_plus.experiments report`; do not edit.\n{text}",
                                encoding="utf-8")
    manifest = {"generator": "python -m taco_plus.experiments report",
                "sources": {relative(p): file_sha256(p) for p in sorted(set(sources))}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return sorted(p for p in out.iterdir() if p.suffix in (".tex", ".png", ".json"))
