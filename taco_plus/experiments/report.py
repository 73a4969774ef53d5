"""The paper's generated tables and figures (``paper/generated/``) from the two registries, checked before anything
is written, seed means with their spread, deterministic (docs/experiments.md, "The report")."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from taco_plus.atomic import file_sha256
from taco_plus.experiments.compare import MISSING, compare, latex_table, render
from taco_plus.experiments.compare import latex_escape as _latex
from taco_plus.experiments.record import RESULTS_DIR, load_recorded, recorded, relative, require
from taco_plus.experiments.registry import Run, eval_dataset, lambda_label, load_runs
from taco_plus.results.format import curve, list_references, load_curve, load_results
from taco_plus.results.per_image import read_per_image_csv
from taco_plus.results.plot import convention, plot_rd
from taco_plus.results.sensitivity import CAPTION_MODES, METRICS

GENERATED_DIR = Path("paper/generated")
BENCH_COMMAND = "python -m taco_plus.bench.attention --csv experiments/results/bench/attention.csv"
DATASET_LABELS = {"kodak": "Kodak (24 images)", "skimage_quickstart": "Quickstart photos (8 scikit-image photos)"}


def runs_frame(runs: dict[str, Run], broken: dict[str, str], root: Path) -> pd.DataFrame:
    """Every registered run: base, what it changes, rate points, status (``list`` and the report)."""
    done, rows = recorded(root), []
    for name, run in runs.items():
        status = "not run: needs " + "; ".join(run.needs) if run.needs else "not recorded yet"
        if name in done:
            rec = load_recorded(name, root)
            seeds = len({e["seed"] for e in rec.provenance["points"]})
            status = f"recorded ({len(rec.results['results']['bpp'])} points" + f", {seeds} seeds" * (seeds > 1) + ")"
        rows.append((name, run.base or MISSING, run.change_text(), len(run.lambdas), status))
    rows += [(name, MISSING, MISSING, MISSING, f"does not compose: {err}") for name, err in broken.items()]
    return pd.DataFrame(rows, columns=["run", "base", "what it changes", "λ", "status"])


def dataset_section(dataset: str, names: list[str], runs: dict[str, Run], root: Path, out: Path) -> str:
    done, label, slug = recorded(root), DATASET_LABELS.get(dataset, dataset), dataset.replace("_", "-")
    with_results = [n for n in names if n in done]
    body = [f"\\subsection{{{_latex(label)}}}\\label{{sec:results-{slug}}}"]
    references = ("all",) if dataset == "kodak" else ()  # the shipped curves are Kodak's
    titles = {n: runs[n].title if n in runs else n for n in with_results}
    if with_results or references:
        plot_rd([dict(load_recorded(n, root).results, name=titles[n]) for n in with_results], out / f"rd_{dataset}.png",
                references=references, title=f"Rate-distortion on {label}")
        caption = (f"Rate-distortion on {label}: recorded runs solid (seed means, error bars one standard deviation): "
                   f"{', '.join(titles.values()) or 'none yet'}" + "; reference curves dashed" * bool(references))
        body += ["\\begin{figure}[H]\\centering", f"\\includegraphics[width=\\linewidth]{{generated/rd_{dataset}.png}}",
                 f"\\caption{{{_latex(caption)}.}}\\label{{fig:rd-{slug}}}", "\\end{figure}"]
    if with_results:
        _, summary, notes, points = compare(with_results, root, labels=titles)
        body.append(render(summary, "latex", notes, f"{label}: BD-rate of each run against its declared base "
                                                    "(pchip, seed means); negative saves bits", f"tab:summary-{slug}"))
        body.append(render(points, "latex", caption=f"{label}: every rate point, mean ± standard deviation over "
                                                    "seeds (times in seconds)", label=f"tab:points-{slug}"))
    pending = _latex(", ".join(n for n in names if n not in done)).replace("\\_", "\\_\\allowbreak{}")  # long names break
    if pending:
        body.append(f"\\noindent Not recorded yet (Table~\\ref{{tab:runs}} says why): {pending}.\n")
    return "\n".join(body) + "\n"


def linformer_table(runs: dict[str, Run], root: Path) -> str:
    """The attention ablation, each run against its declared base: the long-caption (chunked) runs
    are the Linformer comparison; runs at a fixed caption length are labelled for what they measure."""
    done, ablation, rows = recorded(root), {n: r for n, r in runs.items() if "attention" in r.changes}, []
    names = [n for n, r in ablation.items() if n in done and r.base in done]
    summary, notes = compare(names, root, labels={n: n for n in names})[1:3] if names else (pd.DataFrame(), [])
    for name, run in sorted(ablation.items(), key=lambda kv: (kv[1].cfg.text_encoder.max_tokens != "chunked", kv[0])):
        tokens, k, image_k = run.cfg.text_encoder.max_tokens, run.cfg.attention.k, run.cfg.attention.image_k
        first = "long captions" + f", caption to k = {k} summaries" * bool(k) if tokens == "chunked" else \
            f"captions mostly shorter than k = {k}: the adapter change, no compression" if k else "full caption"
        measures = "; ".join([first] + [f"image tokens to {image_k}"] * bool(image_k))
        bd = summary[summary.run == name].iloc[0].filter(like="BD-rate").to_dict() if name in names else \
            {"BD-rate PSNR": "not recorded" if name not in done else f"{run.base} not recorded"}
        rows.append({"run": name, "against": run.base, "captions": tokens, "what it measures": measures, **bd})
    frame = pd.DataFrame(rows).fillna(MISSING)
    return latex_table(frame, "The attention ablation, each run against its declared base. The Linformer comparison is "
                       "the long-caption runs; the others are labelled for what they measure", "tab:linformer",
                       "p{3.4cm}p{2.6cm}p{1.1cm}p{5.4cm}" + "r" * (len(frame.columns) - 4), notes).replace("[H]", "[tbp]")


def sensitivity_frame(root: Path) -> pd.DataFrame:
    """Per image, rate point, seed and caption variant of every recorded run: the differences from
    coding it with its own caption (bpp in percent, PSNR, LPIPS with its convention, CLIP score)."""
    frames = []
    for name in recorded(root):
        run = load_recorded(name, root)
        for entry in run.provenance["points"]:
            folder = run.path / "points" / entry["label"] / "sensitivity"
            # The real captions' rows are the point's own evaluation unless coded apart (sensitivity/real/).
            where = {m: folder / m if (folder / m / "per_image.csv").is_file() else folder.parent for m in CAPTION_MODES}
            modes = {m: pd.DataFrame(read_per_image_csv(where[m] / "per_image.csv")).set_index("id")[list(METRICS)]
                     .astype(float) for m in CAPTION_MODES} if (folder / "sensitivity.csv").is_file() else {}
            for mode in list(modes)[1:]:
                real, delta = modes["real"], modes[mode].loc[modes["real"].index] - modes["real"]
                conv = convention(load_results(where[mode] / "results.json"), "lpips") if delta.lpips.notna().any() \
                    else None
                point = lambda_label(entry["lambda"]) if entry["lambda"] is not None else entry["label"]
                frames.append(delta.assign(run=name, point=point, caption=mode, rate=real.bpp, convention=conv,
                                           bpp=100 * delta.bpp / real.bpp))
    return pd.concat(frames) if frames else pd.DataFrame(columns=["run", "point", "caption", "convention", "rate",
                                                                  *METRICS], dtype=float)


def sensitivity_section(root: Path, out: Path) -> str:
    """Caption-sensitivity figure and table: recorded runs, the released TACO's ΔLPIPS from the reference curves."""
    groups = sensitivity_frame(root).groupby(["run", "point", "caption", "convention"], sort=False, dropna=False)
    frame = groups.mean().join(groups.std(), rsuffix=" sd").assign(n=groups.size()).reset_index()
    released, empty = load_curve("taco_released_lpips_ref"), load_curve("taco_released_empty_caption_lpips_ref")
    (rate, lpips), (_, lpips_empty) = curve(released, "lpips"), curve(empty, "lpips")
    frame = pd.concat([frame, pd.DataFrame({"run": "TACO released (third party)", "caption": "empty", "rate": rate,
                                            "point": [f"λ {v:g}" for v in released["meta"]["lambdas"]],
                                            "lpips": lpips_empty - lpips, "convention": convention(empty, "lpips")})])
    plot_rd([{"name": f"{run}: {caption} caption", "meta": {"lpips_convention": g.convention.iloc[0], "spread": {
        "Δ rate [%]": list(g["bpp sd"]), "lpips": list(g["lpips sd"])}}, "results": {"bpp": list(g.rate), "Δ rate [%]":
        list(g.bpp), **({"lpips": list(g.lpips)} if g.lpips.notna().any() else {})}} for (run, caption), g in
        frame.sort_values("rate").groupby(["run", "caption"], sort=False)], out / "sensitivity.png", ["Δ rate [%]",
        "lpips"], title="Caption sensitivity: another caption minus the image's own", ylabels={"lpips": "ΔLPIPS"})

    def cells(column: str, digits: int) -> list[str]:
        return [MISSING if pd.isna(m) else f"{m:+.{digits}f}" + ("" if pd.isna(sd) else f" ± {sd:.{digits}f}")
                for m, sd in zip(frame[column], frame[column + " sd"])]

    lpips = {f"ΔLPIPS ({c})": [v if c == k else MISSING for v, k in zip(cells("lpips", 4), frame.convention)]
             for c in frame.convention.dropna().unique()}  # one column per convention
    table = pd.DataFrame({"run": frame.run, "point": frame.point, "caption": frame.caption, "n": frame.n.map(
        lambda n: MISSING if pd.isna(n) else f"{n:.0f}"), "bpp": frame.rate.map("{:.4f}".format), "Δbpp (%)":
        cells("bpp", 2), "ΔPSNR (dB)": cells("psnr", 3), **lpips, "ΔCLIP": cells("clip_score", 2)})
    return latex_table(table, "Caption sensitivity: coding each image with an empty caption or another image's "
                              "caption, minus coding it with its own: mean ± standard deviation of the per-image "
                              "differences over the n images of all seeds (runs not listed: not recorded)",
                       "tab:sensitivity", "lll" + "r" * (len(table.columns) - 3))


def attention_section(csv_path: Path, out: Path) -> str:
    from taco_plus.results import attention_bench as bench_report

    rows = pd.read_csv(csv_path)
    adapter = rows[rows.part == "adapter"].assign(image=lambda d: d.width.astype(str) + "×" + d.height.astype(str))
    digits = {"fwd ms": 1, "GFLOPs": 2, "fwd bwd ms": 1}  # per measure; one row per measure and attention option
    table = adapter.melt(["variant", "image", "tokens"], ["fwd_ms", "gflops", "fwd_bwd_ms"], "measure").replace(
        dict(zip(["fwd_ms", "gflops", "fwd_bwd_ms"], digits))).rename(columns={"variant": "attention"}).pivot_table(
        index=["measure", "attention"], columns=["image", "tokens"], values="value", sort=False).astype(object)
    table = table.apply(lambda r: [MISSING if pd.isna(v) else f"{v:.{digits[r.name[0]]}f}" for v in r], axis=1,
                        result_type="broadcast").reset_index()
    log = csv_path.with_suffix(".log")
    conditions = log.read_text(encoding="utf-8").splitlines()[0].lstrip("# ") if log.is_file() else ""
    text = latex_table(table, "Text adapter cost: forward time (fwd ms), forward and backward time at the training "
                              f"crop (fwd bwd ms), forward GFLOPs; official sizes, random weights; {conditions}",
                       "tab:attention", "ll" + "r" * (len(table.columns) - 2))
    bench_report.plot(rows.to_dict("records"), out / "attention.png", conditions.split(", dims=")[0])
    lines = bench_report.conclusions(rows.to_dict("records"))[1:]
    return text + "\\begin{itemize}\\footnotesize\\setlength{\\itemsep}{0pt}\n" + "".join(
        f"\\item{{}} {_latex(line)}\n" for line in lines) + "\\end{itemize}\n"


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
        groups.setdefault(eval_dataset(run.eval), []).append(name)
    for name in [n for n in done if n not in runs]:  # recorded, not registered
        groups.setdefault(load_recorded(name, root).dataset, []).append(name)
    texts = {
        "runs.tex": latex_table(runs_frame(runs, broken, root), "The registered runs "
                                "(configs/experiment/*.yaml); commands: python -m taco_plus.experiments show "
                                "NAME", "tab:runs", "p{3.6cm}p{2.4cm}p{4.4cm}rp{4cm}").replace("[H]", "[tbp]"),
        "results.tex": "\n".join(dataset_section(d, names, runs, root, out) for d, names in groups.items()),
        "linformer.tex": linformer_table(runs, root),
        "sensitivity.tex": sensitivity_section(root, out),
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
