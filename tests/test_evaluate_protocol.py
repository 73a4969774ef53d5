"""The evaluation protocol: caption policies, MS-COCO 30k on the shared COCO subset,
resuming an interrupted evaluation, unreadable images."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from taco_plus.data import BadImageError, CaptionedImageData, DatasetPairingError
from taco_plus.evaluate import evaluate_dataset
from taco_plus.evaluate import EvaluationJournal, EvaluationMismatchError
from taco_plus.images import save_png
from taco_plus.results.format import load_results
from taco_plus.results.per_image import read_per_image_csv
from tests.conftest import shared_path
from tests.test_evaluate import TINY_TEXT, tiny_model
from tests.test_evaluate import codec, dataset, lpips, one_thread, small_fid  # noqa: F401  (fixtures)

CAPTIONS = {  # several captions per image, as COCO has
    "kodim01.png": ["a brick building with red doors", "a red door in a wall"],
    "kodim04.png": ["a woman in a red hat", "a portrait"],
}


@pytest.fixture(scope="module")
def multi(dataset):  # noqa: F811
    return [{**item, "caption": CAPTIONS[item["id"]][0], "captions": CAPTIONS[item["id"]]}
            for item in dataset if item["id"] in CAPTIONS]


class IndexedDataset:
    """A dataset with ``entries`` (like CaptionedImageDataset) that records which items it reads
    and can stop the run at one of them, as a crash would."""

    def __init__(self, items, crash_at=None):
        self.items, self.crash_at, self.read = items, crash_at, []

    @property
    def entries(self):
        return [(item["id"], item.get("captions") or [item["caption"]]) for item in self.items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        if index == self.crash_at:
            raise RuntimeError("simulated crash")
        self.read.append(self.items[index]["id"])
        return self.items[index]


# ------------------------------------------------------------------ caption policies


def test_policy_all_codes_every_caption_and_reports_per_image_means(tmp_path, codec, multi, lpips):  # noqa: F811
    fid = small_fid()
    results = evaluate_dataset(codec, multi, tmp_path, name="all", lpips=lpips, fid=fid, caption_policy="all")
    rows = {r["id"]: r for r in read_per_image_csv(tmp_path / "per_image.csv")}
    for image_id, caps in CAPTIONS.items():
        files = [tmp_path / "bitstreams" / f"{image_id}.{k}.tacoz" for k in range(len(caps))]
        sizes = [f.stat().st_size for f in files]
        row = rows[image_id]
        assert row["caption_policy"] == "all" and row["captions"] == len(caps) and row["caption_index"] is None
        assert row["bytes"] == pytest.approx(sum(sizes) / len(sizes))
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (row["height"] * row["width"]))
        assert len({f.read_bytes() for f in files}) == len(files)  # each caption coded separately
    assert results["results"]["bpp"] == [pytest.approx(sum(r["bpp"] for r in rows.values()) / 2)]
    assert fid.num_samples == 2 * (4 + 1) + 2 * 1  # every reconstruction: 4 + 1 shifted patches of 32² in 64², 1 in 60x40
    assert results["meta"]["caption_policy"] == "all" and results["name"] == "all"


def test_policy_oracle_lpips_keeps_the_best_caption_and_says_oracle_everywhere(tmp_path, codec, multi, lpips):  # noqa: F811
    results = evaluate_dataset(codec, multi, tmp_path, name="taco", lpips=lpips, caption_policy="oracle_lpips")
    rows = read_per_image_csv(tmp_path / "per_image.csv")
    for row in rows:
        caps = CAPTIONS[row["id"]]
        x = next(i["image"] for i in multi if i["id"] == row["id"])
        # Independently: decode every candidate file and measure it on 8-bit images.
        scores = []
        for k in range(len(caps)):
            data = (tmp_path / "bitstreams" / f"{row['id']}.{k}.tacoz").read_bytes()
            x_hat = (codec.decode(data) * 255).round().clamp(0, 255) / 255
            scores.append(float(lpips(x_hat, ((x * 255).round() / 255)[None]).mean()))
        best = min(range(len(caps)), key=scores.__getitem__)
        assert row["caption_index"] == best and row["lpips"] == pytest.approx(scores[best], rel=1e-5)
        assert row["bytes"] == (tmp_path / "bitstreams" / f"{row['id']}.{best}.tacoz").stat().st_size
        assert row["caption_policy"] == "oracle_lpips" and row["captions"] == len(caps)
    assert results["name"] == "taco-oracle_lpips" and "ORACLE" in results["description"]
    assert results["meta"]["oracle"] is True and results["meta"]["caption_policy"] == "oracle_lpips"
    with pytest.raises(ValueError, match="LPIPS"):
        evaluate_dataset(codec, multi, tmp_path / "x", name="x", caption_policy="oracle_lpips")
    with pytest.raises(ValueError, match="caption_mode='real'"):
        evaluate_dataset(codec, multi, tmp_path / "x", name="x", lpips=lpips, caption_policy="all",
                         caption_mode="empty")


# ------------------------------------------------------------------------ resume


def _without_timing(folder):
    return repr([{k: v for k, v in r.items() if k not in ("enc_ms", "dec_ms")}
                 for r in read_per_image_csv(folder / "per_image.csv")])  # repr: nan == nan


def test_interrupted_evaluation_resumes_to_the_same_results(tmp_path, codec, dataset, lpips):  # noqa: F811
    full = evaluate_dataset(codec, dataset, tmp_path / "full", name="r", lpips=lpips, fid=small_fid())
    out = tmp_path / "run"
    crashing = IndexedDataset(dataset, crash_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate_dataset(codec, crashing, out, name="r", lpips=lpips, fid=small_fid())
    assert [r["id"] for r in read_per_image_csv(out / "per_image.csv")] == ["kodim01.png", "kodim04.png"]
    with (out / "per_image.csv").open("a") as f:
        f.write("kodim23.png,64,64,12")  # a row cut by a kill in mid-write: dropped on resume

    again = IndexedDataset(dataset)
    resumed = evaluate_dataset(codec, again, out, name="r", lpips=lpips, fid=small_fid())
    assert again.read == ["kodim23.png"]  # finished images are not even read again
    assert resumed["meta"]["resumed_images"] == 2 and resumed["meta"]["images"] == 3
    assert _without_timing(out) == _without_timing(tmp_path / "full")
    for key in ("bpp", "psnr-rgb", "lpips", "fid"):  # FID sums restored from the snapshot
        assert resumed["results"][key] == pytest.approx(full["results"][key], rel=1e-9), key

    # Other settings never mix into the same folder; resume=False starts over.
    with pytest.raises(EvaluationMismatchError, match="caption_mode"):
        evaluate_dataset(codec, dataset, out, name="r", lpips=lpips, fid=small_fid(), caption_mode="empty")
    fresh = IndexedDataset(dataset[:1])
    assert evaluate_dataset(codec, fresh, out, name="r", resume=False)["meta"]["resumed_images"] == 0
    assert fresh.read == ["kodim01.png"]


def test_fid_rows_after_the_last_snapshot_are_recomputed(tmp_path):
    # A kill between two FID snapshots: the rows after the snapshot are not in the FID sums,
    # so the resumed journal drops them (they are coded again) and restores the sums.
    settings = {"model_fingerprint": "x"}
    fid = small_fid()
    journal = EvaluationJournal(tmp_path, settings, fid, fid_snapshot_every=2)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for i in range(3):
        fid.update(x * (0.5 + 0.1 * i), x)
        journal.add({"id": f"img{i}.png", "height": 32, "width": 32, "bytes": 10, "bpp": 0.1, "psnr": 30.0})
    # (no close(): the process was killed; every row was flushed, the FID snapshot covers 2)
    restored = small_fid()
    resumed = EvaluationJournal(tmp_path, settings, restored, fid_snapshot_every=2)
    assert [r["id"] for r in resumed.rows] == ["img0.png", "img1.png"] and restored.num_samples == 2
    assert len((tmp_path / "per_image.csv").read_text().splitlines()) == 3  # header + the 2 kept rows
    with pytest.raises(EvaluationMismatchError, match="other settings"):
        EvaluationJournal(tmp_path, {"model_fingerprint": "y"}, small_fid())


# ------------------------------------------------------------------ unreadable images


def _corrupt_folder(tmp_path, good):
    """Two readable PNGs and four unreadable files, every one captioned."""
    folder = tmp_path / "images"
    for name, item in good.items():
        save_png(item["image"], folder / name)
    png = (folder / "a_good.png").read_bytes()
    from PIL import Image

    Image.fromarray((good["a_good.png"]["image"] * 255).byte().permute(1, 2, 0).numpy()).save(folder / "full.jpg")
    jpeg = (folder / "full.jpg").read_bytes()
    (folder / "full.jpg").unlink()
    (folder / "b_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "c_truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "d_text.png").write_text("this is not an image\n")
    (folder / "e_empty.png").write_bytes(b"")
    names = sorted(p.name for p in folder.iterdir())
    (tmp_path / "captions.json").write_text(json.dumps({n: f"caption of {n}" for n in names}))
    return folder


BAD = ["b_truncated.jpg", "c_truncated.png", "d_text.png", "e_empty.png"]


def test_unreadable_images_are_reported_and_skipped_in_evaluation(tmp_path, codec, dataset, caplog):  # noqa: F811
    from taco_plus.captions.sources import CaptionSetSource

    good = {"a_good.png": dataset[0], "z_good.png": dataset[2]}
    folder = _corrupt_folder(tmp_path, good)
    data = CaptionedImageData(folder, CaptionSetSource(tmp_path / "captions.json"), num_workers=0)
    with caplog.at_level(logging.WARNING):
        results = evaluate_dataset(codec, data.eval_dataset(), tmp_path / "out", name="bad")
    assert [r["id"] for r in read_per_image_csv(tmp_path / "out" / "per_image.csv")] == ["a_good.png", "z_good.png"]
    unreadable = results["meta"]["unreadable_images"]
    assert len(unreadable) == 4 and all(str(folder / n) in u for n, u in zip(BAD, unreadable))
    assert all(str(folder / n) in caplog.text for n in BAD)
    assert "4 unreadable images were skipped" in results["meta"]["notes"][-1]

    # strict stops at the first bad file, naming it; the rows before it stay on disk and a
    # rerun under the default policy resumes after them.
    strict = CaptionedImageData(folder, CaptionSetSource(tmp_path / "captions.json"), num_workers=0,
                                bad_image="strict")
    out = tmp_path / "strict"
    with pytest.raises(BadImageError, match="b_truncated.jpg"):
        evaluate_dataset(codec, strict.eval_dataset(), out, name="bad")
    assert [r["id"] for r in read_per_image_csv(out / "per_image.csv")] == ["a_good.png"]
    resumed = evaluate_dataset(codec, data.eval_dataset(), out, name="bad")
    assert resumed["meta"]["resumed_images"] == 1 and resumed["meta"]["images"] == 2


# ------------------------------------------------------------------ MS-COCO 30k


def test_coco30k_config_on_the_shared_coco_subset(tmp_path, caplog):
    from taco_plus.checkpoint import save_codec
    from taco_plus.schemas import compose
    from taco_plus.evaluate import run

    root = shared_path("data", "coco_mini")
    model_config = {"_target_": "taco_plus.models.TACO", "N": 32, "M": 64, "slice_ch": [4, 4, 8, 16, 32],
                    "text_dim": 64, "num_heads": 4}
    save_codec(tmp_path / "tiny.pt", tiny_model(), model_config, TINY_TEXT, None)
    captioned = ["000000011813.jpg", "000000434204.jpg"]  # the two smallest captioned val2017 images
    uncaptioned = "000000527220.jpg"  # one of the 80 val2017 images without captions
    out = tmp_path / "out"

    def overrides(names):
        image_list = tmp_path / f"list{len(names)}.json"
        image_list.write_text(json.dumps(names))
        return [
            "data=coco30k", f"data.image_dir={root / 'val2017'}", f"data.image_list={image_list}",
            f"captions.annotations_json={root / 'annotations' / 'captions_val2017.json'}",
            f"checkpoint={tmp_path / 'tiny.pt'}", "device=cpu", f"out_dir={out}", "name=coco-tiny",
            "metrics.lpips.pretrained=false", "metrics.clip_score=null", "metrics.fid.enabled=false", "coding_workers=0",
        ]

    cfg = compose(overrides(captioned[:1]), config_name="eval")
    assert cfg.data.fid_patch_size is None and cfg.metrics.fid.patch_size is None  # whole images
    assert cfg.caption_policy == "first" and cfg.captions.annotations_json.endswith("captions_val2017.json")
    first = run(cfg)
    assert first["meta"]["images"] == 1
    # Another image list never mixes into the folder: stopped, saying what differs; resume=false starts over.
    with pytest.raises(EvaluationMismatchError, match=r"images: \"sha256 \w+ of 1 images\" -> \"sha256 \w+ of 2 images"):
        run(compose(overrides([*captioned, uncaptioned]), config_name="eval"))
    run(compose(overrides([*captioned, uncaptioned]) + ["resume=false"], config_name="eval"))
    # Rerun as is: the finished images are kept, not coded again; the uncaptioned image is reported by
    # the missing-caption policy.
    done = (out / "bitstreams" / f"{captioned[0]}.tacoz").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        results = run(compose(overrides([*captioned, uncaptioned]), config_name="eval"))
    assert (out / "bitstreams" / f"{captioned[0]}.tacoz").stat().st_mtime_ns == done
    assert "2 images already done" in caplog.text and "coco-tiny: 2/2 images" in caplog.text
    rows = read_per_image_csv(out / "per_image.csv")
    assert [r["id"] for r in rows] == captioned and {r["caption_policy"] for r in rows} == {"first"}
    meta = results["meta"]
    assert meta["resumed_images"] == 2 and meta["images"] == 2
    assert any(f"1 images have no caption: {uncaptioned}" in line for line in meta["dataset_report"])
    assert load_results(out / "results.json")["results"]["bpp"][0] == pytest.approx(
        sum(r["bpp"] for r in rows) / 2)
    assert all(math.isfinite(r["psnr"]) for r in rows)
    # A listed image without its file is an incomplete benchmark: an error by default.
    with pytest.raises(DatasetPairingError, match="no image file"):
        run(compose(overrides([*captioned, "COCO_val2014_000000000042.jpg"]), config_name="eval"))


# ------------------------------------------------------- resume key, damaged journals


def test_resume_never_mixes_caption_sets_checkpoints_or_metric_settings(tmp_path, codec, dataset):  # noqa: F811
    # Caption set B into a folder holding set A's rows: stopped, saying what differs (one line).
    other_captions = [{**item, "caption": f"a black cat on a sofa ({item['id']})"} for item in dataset]
    out = tmp_path / "out"
    first = evaluate_dataset(codec, dataset, out, name="a")
    with pytest.raises(EvaluationMismatchError, match=r"caption_set: \"sha256 \w+ of 3 caption lists\" -> ") as err:
        evaluate_dataset(codec, other_captions, out, name="b")
    assert "\n" not in str(err.value) and "resume=false" in str(err.value)
    # resume=false starts afresh: the same numbers as a fresh folder, not set A's.
    fresh = evaluate_dataset(codec, other_captions, out, name="b", resume=False)
    alone = evaluate_dataset(codec, other_captions, tmp_path / "alone", name="b")
    assert fresh["results"]["bpp"] == alone["results"]["bpp"] != first["results"]["bpp"]
    assert fresh["meta"]["resumed_images"] == 0
    # Another checkpoint (weights), or other metric settings, are refused as well.
    tweaked = tiny_model()
    with torch.no_grad():
        next(tweaked.g_s.parameters()).mul_(1.01)
    from taco_plus.checkpoint import LoadedCodec
    from taco_plus.codec import TacoCodec

    with pytest.raises(EvaluationMismatchError, match="model_fingerprint"):
        evaluate_dataset(TacoCodec(LoadedCodec(tweaked, dict(TINY_TEXT))), other_captions, out, name="b")
    with pytest.raises(EvaluationMismatchError, match=r"fid: null -> "):
        evaluate_dataset(codec, other_captions, out, name="b", fid=small_fid())


def test_an_image_out_of_the_codecs_range_is_skipped_named_and_not_read_again(tmp_path, codec, dataset, monkeypatch):  # noqa: F811
    import numpy as np
    from PIL import Image

    from taco_plus.captions.sources import CaptionSetSource
    from taco_plus.data import dataset as data_module

    folder = tmp_path / "images"
    save_png(dataset[0]["image"], folder / "a_good.png")
    Image.fromarray(np.zeros((3, 70000, 3), np.uint8)).save(folder / "b_wide.png")  # 3 x 70000 pixels
    (tmp_path / "captions.json").write_text(json.dumps({"a_good.png": "a house", "b_wide.png": "a line"}))
    data = CaptionedImageData(folder, CaptionSetSource(tmp_path / "captions.json"), num_workers=0)
    results = evaluate_dataset(codec, data.eval_dataset(), tmp_path / "out", name="wide")
    assert results["meta"]["images"] == 1 and len(results["meta"]["unreadable_images"]) == 1
    reason = results["meta"]["unreadable_images"][0]
    assert str(folder / "b_wide.png") in reason and "3x70000" in reason and "65536" in reason
    assert "1 unreadable images were skipped" in results["meta"]["notes"][-1]
    read = []
    real_load = data_module.load_image
    monkeypatch.setattr(data_module, "load_image", lambda path: read.append(path.name) or real_load(path))
    again = evaluate_dataset(codec, data.eval_dataset(), tmp_path / "out", name="wide")
    assert read == [] and again["meta"]["unreadable_images"] == [reason] and again["meta"]["resumed_images"] == 1


def test_a_damaged_journal_is_recovered_naming_file_and_line_or_stops(tmp_path, codec, dataset, caplog):  # noqa: F811
    full = evaluate_dataset(codec, dataset, tmp_path / "full", name="j")
    out = tmp_path / "out"
    evaluate_dataset(codec, dataset, out, name="j")
    csv = out / "per_image.csv"
    header, row1, row2, row3, _ = csv.read_bytes().split(b"\n")
    # A corrupt middle line, a garbage last line, a non-UTF-8 line cut by a kill.
    csv.write_bytes(b"\n".join([header, row1, row2.replace(b",60,", b",6?,"), b"garbage,,\xff", b"\xfe\xff" + row3[:9]]))
    again = IndexedDataset(dataset)
    with caplog.at_level(logging.WARNING):
        resumed = evaluate_dataset(codec, again, out, name="j")
    assert f"{csv} line 3 dropped" in caplog.text and f"{csv} line 4 dropped" in caplog.text
    assert f"{csv} line 5 dropped (unfinished" in caplog.text
    assert again.read == ["kodim04.png", "kodim23.png"]  # coded again; kodim01 kept
    assert resumed["meta"]["resumed_images"] == 1 and _without_timing(out) == _without_timing(tmp_path / "full")
    assert resumed["results"]["bpp"] == full["results"]["bpp"]
    # An empty eval_state.json: the rows cannot be checked, so the resume stops, naming the file.
    (out / "eval_state.json").write_text("")
    with pytest.raises(EvaluationMismatchError, match=r"eval_state\.json is damaged .* resume=false") as err:
        evaluate_dataset(codec, dataset, out, name="j")
    assert "\n" not in str(err.value)


def test_a_damaged_row_inside_the_fid_sums_stops_the_resume(tmp_path, codec, dataset):  # noqa: F811
    out = tmp_path / "out"
    evaluate_dataset(codec, dataset, out, name="f", fid=small_fid())
    csv = out / "per_image.csv"
    lines = csv.read_bytes().split(b"\n")
    lines[2] = b"\xff" + lines[2]
    csv.write_bytes(b"\n".join(lines))
    with pytest.raises(EvaluationMismatchError, match=r"fid_state\.pt covers 3 images but .*per_image\.csv has 2"):
        evaluate_dataset(codec, dataset, out, name="f", fid=small_fid())
    (out / "fid_state.pt").write_bytes(b"not a snapshot")
    with pytest.raises(EvaluationMismatchError, match=r"fid_state\.pt is damaged"):
        evaluate_dataset(codec, dataset, out, name="f", fid=small_fid())


def test_every_image_unreadable_or_a_damaged_journal_is_one_line_from_the_command(tmp_path, dataset):  # noqa: F811
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT
    from tests.test_evaluate import _folder

    overrides = _folder(tmp_path, dataset) + ["model=tiny", "text_encoder=tiny", f"out_dir={tmp_path / 'out'}",
                                              "metrics.lpips=null", "metrics.clip_score=null", "metrics.fid.enabled=false",
                                              "coding_workers=0"]
    for path in (tmp_path / "images").iterdir():
        path.write_bytes(b"not an image")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "taco_plus.evaluate", *overrides], env=env, capture_output=True,
                          text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output[-3000:]
    [line] = [line for line in output.splitlines() if "no image was evaluated" in line]
    assert f"all 2 images of {tmp_path / 'images'} are unreadable" in line
    # The journal those runs left, damaged: one line naming the file.
    (tmp_path / "out" / "eval_state.json").write_text("")
    done = subprocess.run([sys.executable, "-m", "taco_plus.evaluate", *overrides], env=env, capture_output=True,
                          text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output and f"{tmp_path / 'out' / 'eval_state.json'} is damaged" in output
