"""``taco-plus download``: the pretrained weights and data evaluation reads, each fetched by its library's own
downloader into the cache that library reads (docs/evaluation.md, "Getting the weights and data")."""

from __future__ import annotations

import argparse
import os
import re
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, NamedTuple

from taco_plus.cli import CLIError

TORCHVISION_URL = "https://download.pytorch.org/models/"
KODAK_URL = "https://r0k.us/graphics/kodak/kodak/"
COCO_URL = "http://images.cocodataset.org/annotations/annotations_trainval2014.zip"
COCO_CAPTIONS = ("captions_train2014.json", "captions_val2014.json")
TARGETS = ("clip", "lpips", "fid", "kodak", "coco-captions", "longclip-b", "longclip-l")
ALL = TARGETS[:5]  # what evaluation reads by default; Long-CLIP is an option


class Item(NamedTuple):
    what: str
    where: Path
    size: str  # approximate, for --dry-run
    present: bool
    fetch: Callable[[], Any]


def plan(target: str) -> Item:
    """What ``target`` downloads, where to, and how."""
    data = Path(os.environ.get("TACO_DATA", "data"))
    if target in ("clip", "longclip-b", "longclip-l"):
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
        from open_clip import get_pretrained_cfg
        from open_clip.pretrained import download_pretrained

        from taco_plus.text.longclip import RELEASES

        cfg = get_pretrained_cfg("ViT-B-32", "openai")  # the official text pipeline's weights (docs/text.md)
        releases = {name: (repo, file) for repo, file, name in RELEASES.values()}
        repo, file = releases.get(target) or (cfg["hf_hub"].strip("/"), "open_clip_model.safetensors")
        where = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        present = isinstance(try_to_load_from_cache(repo, file), str)
        if target == "clip":
            return Item("CLIP ViT-B/32, OpenAI weights (open_clip)", where, "~0.6 GB", present,
                        lambda: download_pretrained(cfg))
        size = {"longclip-b": "~0.6 GB", "longclip-l": "~1.7 GB"}[target]
        return Item(f"Long-CLIP checkpoint {file}", where, size, present, lambda: hf_hub_download(repo, file))
    if target in ("lpips", "fid"):
        from taco_plus.losses.lpips import backbone_path
        from taco_plus.metrics.fid import FID_WEIGHTS_URL, fid_weights_path

        if target == "lpips":
            path, url = backbone_path("alex"), TORCHVISION_URL + backbone_path("alex").name
            return Item("LPIPS backbone: torchvision's AlexNet", path, "~0.24 GB", path.is_file(),
                        lambda: _torch_hub(url, path))
        path = fid_weights_path()
        return Item("FID Inception (torch-fidelity's)", path, "~0.1 GB", path.is_file(),
                    lambda: _torch_hub(FID_WEIGHTS_URL, path))
    if target == "kodak":
        folder = data / "kodak"
        names = [f"kodim{i:02d}.png" for i in range(1, 25)]
        return Item("Kodak, 24 PNGs (r0k.us)", folder, "~15 MB", all((folder / n).is_file() for n in names),
                    lambda: [_fetch(KODAK_URL + n, folder / n, check=_kodak_png) for n in names])
    folder = data / "coco" / "annotations"
    return Item("MS-COCO 2014 captions (annotations_trainval2014.zip)", folder, "~0.25 GB zip, ~0.1 GB kept",
                all((folder / n).is_file() for n in COCO_CAPTIONS), lambda: _coco_captions(folder))


def _torch_hub(url: str, path: Path) -> None:
    """torch.hub's download, checking the SHA-256 prefix the file name carries (``-7be5be79.pth``)."""
    import torch.hub

    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = re.search(r"-([a-f0-9]{8,})\.", path.name)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix and prefix[1], progress=True)


def _fetch(url: str, path: Path, check: Callable[[Path], None] = lambda path: None) -> Path:
    """Downloads ``url`` to ``path``, resuming a ``path.part`` (HTTP range), checking the size and ``check``."""
    from tqdm.auto import tqdm

    if path.is_file():
        return path
    part = path.with_name(path.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    done = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not done:
            raise
        part.unlink()  # nothing left to send: the part is whole but unchecked, or stale
        return _fetch(url, path, check)
    with response:
        if response.status != 206:  # a server ignoring the range sends the whole file again
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length else None
        with open(part, "ab" if done else "wb") as f, tqdm(total=total, initial=done, unit="B", unit_scale=True,
                                                            desc=path.name, leave=False) as bar:
            while chunk := response.read(1 << 20):
                bar.update(f.write(chunk))
    try:
        if total is not None and part.stat().st_size != total:
            raise ValueError(f"{part.stat().st_size:,} bytes where the server announced {total:,}")
        check(part)
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error) as err:
        part.unlink()
        raise CLIError(f"{url}: the download is damaged ({err}); it was deleted, run the command again") from None
    return part.replace(path)


def _kodak_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.format != "PNG" or sorted(img.size) != [512, 768]:
            raise ValueError(f"not a 768x512 Kodak PNG ({img.format} {img.size})")


def _coco_captions(folder: Path) -> None:
    """The two captions files of the annotations zip, read with their CRC checked; the zip is removed."""
    from taco_plus.atomic import atomic_write

    def check(path: Path) -> None:
        with zipfile.ZipFile(path) as z:
            if bad := z.testzip():
                raise ValueError(f"{bad} fails its CRC check")

    archive = _fetch(COCO_URL, folder / "annotations_trainval2014.zip", check)
    with zipfile.ZipFile(archive) as z:
        for name in COCO_CAPTIONS:
            atomic_write(folder / name, z.read(f"annotations/{name}"))
    archive.unlink()


def run(args: argparse.Namespace) -> None:
    targets = dict.fromkeys(t for name in args.targets for t in (ALL if name == "all" else [name]))
    for target in targets:
        item = plan(target)
        state = "present" if item.present else "to download"
        print(f"{target:14} {item.what}, {item.size}: {item.where} ({state})", flush=True)
        if args.dry_run or item.present:
            continue
        try:
            item.fetch()
        except (RuntimeError, OSError) as err:  # no network, HTTP errors, torch.hub's hash check
            offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
            raise CLIError(f"{target}: {err}" + (" (HF_HUB_OFFLINE is set: unset it to download)" * offline)) from None
        print(f"{target:14} done: {item.where}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("download", help="fetch pretrained weights and data sets into their caches",
                              description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("targets", nargs="+", choices=(*TARGETS, "all"), metavar="TARGET",
                   help=f"one or more of {', '.join(TARGETS)}, or all ({', '.join(ALL)})")
    p.add_argument("--dry-run", action="store_true", help="say what goes where and how big; download nothing")
    p.set_defaults(func=run)
