"""Report sections on captions: caption-set statistics and token-weight examples.

* ``caption_stats.tex`` from ``captions/caption_stats.json``: per caption set, captions,
  words and CLIP tokens per caption, and the share cut by TACO's 38 and CLIP's 77
  tokens; a regenerated set that was not made is a "not run" row with its reason;
* ``token_weights.tex`` from ``weighting/token_weights.json``: the tokens each weighting
  raises above 1 in a few real captions, with their weights.
"""

from __future__ import annotations

from pathlib import Path

from taco_plus.experiments.report.context import ReportContext
from taco_plus.experiments.tables import Table, fmt

WEIGHTING_LABELS = {"tfidf": "TF-IDF", "ner": "NER", "tfidf_ner": "TF-IDF+NER"}


def caption_stats_table(record: dict) -> Table:
    table = Table(
        ["caption set", "captions", "words (mean)", "CLIP tokens (mean / median / p95)", "> 38 tokens", "> 77 tokens"],
        title="Caption lengths: TACO's text input keeps 38 CLIP tokens (start and end included), CLIP's context 77",
    )
    for s in record["sets"].values():
        if s["status"] != "ok":
            table.add_span(f"{s['label']}: {s['reason']}")
            continue
        t = s["stats"]
        w, k = t["words_per_caption"], t["clip_tokens_per_caption"]
        table.add([s["label"], f"{t['num_captions']:,}", fmt(w["mean"], 1),
                   f"{k['mean']:.1f} / {k['median']:g} / {k['p95']}",
                   fmt(100 * t["share_over_38_tokens"], 1, unit="%"), fmt(100 * t["share_over_77_tokens"], 1, unit="%")])
    table.notes = ["Tokens: open_clip's CLIP BPE, start and end of text included. Originals read from "
                   f"{record['data_dir']} (not copied into the repository); the registry keeps only these statistics."]
    return table


def token_weight_table(record: dict) -> Table:
    table = Table(["caption", "weighting", "tokens weighted above 1"], align="p{5.2cm}lp{7.4cm}",
                  title=(f"Token weights (max {record['max_weight']:g}) of real captions; TF-IDF fitted on "
                         f"{record['tfidf']['num_documents']:,} captions of {record['tfidf']['fitted_on']}, NER: "
                         f"{record['ner']['pipeline']} {record['ner']['pipeline_version']}"))
    for ex in record["examples"]:
        table.add_rule()
        caption = ex["caption"] if len(ex["caption"]) <= 90 else ex["caption"][:87] + "..."
        for i, (name, rows) in enumerate(ex["weights"].items()):
            boosted = [f"{r['token']} {r['weight']:.2f}" for r in rows if r["weight"] > 1 and not r["special"]]
            first = f"{ex['id']}: {caption}" if i == 0 else ""
            table.add([first, WEIGHTING_LABELS.get(name, name), ", ".join(boosted) or "none (all 1.00)"])
    table.notes = ["Tokens are CLIP BPE pieces; every other token, start/end of text and padding weigh 1. In the "
                   "model a weight w adds log w to the token's attention logits in the Injector."]
    return table


def write_captions(ctx: ReportContext) -> list[Path]:
    stats = ctx.source_json("captions/caption_stats.json")
    first = ctx.write_tex("caption_stats.tex", caption_stats_table(stats).render("latex", label="tab:caption-stats"))
    weights = ctx.source_json("weighting/token_weights.json")
    second = ctx.write_tex("token_weights.tex", token_weight_table(weights).render("latex", label="tab:token-weights"))
    return [first, second]
