"""``taco-plus download`` against a loopback HTTP server standing in for download.pytorch.org,
GitHub releases, r0k.us, cocodataset.org and the Hugging Face hub (``HF_ENDPOINT``): where the
files land (the caches the loaders read), resuming, damaged and mismatching downloads, the dry
run, and the missing-weights messages that name the command."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from taco_plus.cli import download
from taco_plus.cli import main as cli_main
from taco_plus.text.clip_loading import ClipWeightsUnavailableError
from taco_plus.text.longclip import longclip_weights
from tests.conftest import REPO_ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FileServer:
    """Serves ``files`` (URL path -> bytes) with HEAD, GET and single ``Range: bytes=N-``
    requests, plus the headers huggingface_hub reads; ``log`` holds (method, path, range, bytes sent)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.log = files, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self.answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                data = server.files.get(self.path.split("?")[0])
                ranged = self.headers.get("Range")
                if data is None:
                    server.log.append((self.command, self.path, ranged, 0))
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(ranged.split("=")[1].split("-")[0]) if ranged else 0
                self.send_response(206 if ranged else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.end_headers()
                sent = data[start:] if body else b""
                self.wfile.write(sent)
                server.log.append((self.command, self.path, ranged, len(sent)))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "FileServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def weights_named(stem: str, payload: bytes) -> tuple[str, bytes]:
    """A file name carrying the SHA-256 prefix of ``payload``, torch.hub's convention."""
    return f"{stem}-{hashlib.sha256(payload).hexdigest()[:8]}.pth", payload


def png(seed: int, size=(768, 512)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (seed * 10 % 256, 80, 160)).save(buf, format="PNG")
    return buf.getvalue()


def coco_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for split in ("train2014", "val2014"):
            captions = {"images": [{"id": 1, "file_name": f"COCO_{split}_1.jpg"}],
                        "annotations": [{"id": 7, "image_id": 1, "caption": f"a {split} caption"}]}
            z.writestr(f"annotations/captions_{split}.json", json.dumps(captions))
        z.writestr("annotations/instances_val2014.json", os.urandom(50_000), zipfile.ZIP_STORED)  # not extracted
    return buf.getvalue()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty $TORCH_HOME and $TACO_DATA; torch.hub file names matching the served payloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TACO_DATA", str(tmp_path / "data"))
    alex, fid = weights_named("alexnet-owt", b"alexnet weights" * 100), weights_named("pt_inception", b"fid" * 100)
    monkeypatch.setattr("taco_plus.losses.lpips.BACKBONE_FILES", {"alex": alex[0]})
    monkeypatch.setattr("taco_plus.metrics.fid.FID_WEIGHTS_FILE", fid[0])
    files = {f"/models/{alex[0]}": alex[1], f"/fid/{fid[0]}": fid[1], "/annotations_trainval2014.zip": coco_zip()}
    files |= {f"/kodak/kodim{i:02d}.png": png(i, (768, 512) if i % 2 else (512, 768)) for i in range(1, 25)}
    with FileServer(files) as server:
        monkeypatch.setattr(download, "TORCHVISION_URL", server.url + "/models/")
        monkeypatch.setattr("taco_plus.metrics.fid.FID_WEIGHTS_URL", f"{server.url}/fid/{fid[0]}")
        monkeypatch.setattr(download, "KODAK_URL", server.url + "/kodak/")
        monkeypatch.setattr(download, "COCO_URL", server.url + "/annotations_trainval2014.zip")
        yield tmp_path, server


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(["download", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_files_land_where_the_loaders_look(caches, capsys):
    tmp_path, server = caches
    from taco_plus.losses.lpips import backbone_path
    from taco_plus.metrics.fid import fid_weights_path

    assert run(capsys, "lpips", "fid", "kodak", "coco-captions")[0] == 0
    assert backbone_path("alex").read_bytes() == server.files[f"/models/{backbone_path('alex').name}"]
    assert backbone_path("alex").parent == tmp_path / "torch" / "hub" / "checkpoints"  # torchvision's cache
    assert fid_weights_path().read_bytes() == server.files[f"/fid/{fid_weights_path().name}"]
    kodak = tmp_path / "data" / "kodak"
    assert sorted(p.name for p in kodak.iterdir()) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    annotations = tmp_path / "data" / "coco" / "annotations"
    assert sorted(p.name for p in annotations.iterdir()) == ["captions_train2014.json", "captions_val2014.json"]
    assert json.loads((annotations / "captions_val2014.json").read_text())["annotations"][0]["caption"] == \
        "a val2014 caption"
    # Run again: everything is present, nothing is fetched.
    requests = len(server.log)
    code, out, _ = run(capsys, "lpips", "fid", "kodak", "coco-captions")
    assert code == 0 and out.count("(present)") == 4 and len(server.log) == requests


def test_dry_run_says_what_goes_where_and_fetches_nothing(caches, capsys):
    tmp_path, server = caches
    code, out, _ = run(capsys, "all", "longclip-b", "--dry-run")
    assert code == 0 and not server.log and not (tmp_path / "data").exists() and not (tmp_path / "torch").exists()
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert list(lines) == ["clip", "lpips", "fid", "kodak", "coco-captions", "longclip-b"]
    assert "models--timm--vit_base_patch32_clip_224.openai" in lines["clip"] and "GB" in lines["clip"]
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-") in lines["lpips"]
    assert f"{tmp_path / 'data' / 'kodak'} (to download)" in lines["kodak"]
    assert "models--BeichenZhang--LongCLIP-B" in lines["longclip-b"]


def test_an_interrupted_download_resumes(caches, capsys):
    tmp_path, server = caches
    whole = server.files["/annotations_trainval2014.zip"]
    part = tmp_path / "data" / "coco" / "annotations" / "annotations_trainval2014.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[:1000])  # what an interrupted run left
    assert run(capsys, "coco-captions")[0] == 0
    (request,) = [entry for entry in server.log if entry[1] == "/annotations_trainval2014.zip"]
    assert request == ("GET", "/annotations_trainval2014.zip", "bytes=1000-", len(whole) - 1000)
    assert sorted(p.name for p in part.parent.iterdir()) == ["captions_train2014.json", "captions_val2014.json"]


def test_damaged_or_mismatching_downloads_are_refused_and_removed(caches, capsys):
    tmp_path, server = caches
    from taco_plus.losses.lpips import backbone_path

    server.files[f"/models/{backbone_path('alex').name}"] = b"not the published file"
    code, _, err = run(capsys, "lpips")
    assert code == 2 and "invalid hash value" in err.splitlines()[-1]  # one line after the progress bar
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").iterdir())  # no partial file either
    server.files["/kodak/kodim05.png"] = png(5, (100, 100))
    code, _, err = run(capsys, "kodak")
    assert code == 2 and "kodim05.png" in err and "not a 768x512 Kodak PNG" in err
    assert not (tmp_path / "data" / "kodak" / "kodim05.png").exists()
    assert not list((tmp_path / "data" / "kodak").glob("*.part"))
    zipped = bytearray(server.files["/annotations_trainval2014.zip"])
    zipped[100] ^= 0xFF  # a flipped byte inside the first member
    server.files["/annotations_trainval2014.zip"] = bytes(zipped)
    code, _, err = run(capsys, "coco-captions")
    assert code == 2 and "damaged" in err
    assert not list((tmp_path / "data" / "coco" / "annotations").iterdir())


def test_hugging_face_weights_land_in_the_hub_cache(tmp_path, monkeypatch):
    """open_clip's own download of CLIP ViT-B/32 and huggingface_hub's of Long-CLIP, pointed at the
    loopback server with HF_ENDPOINT (a real `taco-plus` process: the endpoint is read at import)."""
    clip, longclip = b"clip weights" * 1000, b"long clip" * 1000
    files = {"/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_model.safetensors": clip,
             "/BeichenZhang/LongCLIP-B/resolve/main/longclip-B.pt": longclip}
    env = dict(os.environ, HF_ENDPOINT="", HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1",
               PYTHONPATH=str(REPO_ROOT), TACO_DATA=str(tmp_path / "data"))
    with FileServer(files) as server:
        env["HF_ENDPOINT"] = server.url
        command = [sys.executable, "-m", "taco_plus", "download", "clip", "longclip-b"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(to download)") == 2 and proc.stdout.count("done:") == 2
    cache = tmp_path / "hf" / "hub"
    snapshot = cache / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / COMMIT
    assert (snapshot / "open_clip_model.safetensors").read_bytes() == clip  # where open_clip's loader looks
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # where the Long-CLIP loader finds it, offline
    assert longclip_weights("LongCLIP-B", "release", cache_dir=str(cache)).read_bytes() == longclip
    with pytest.raises(ClipWeightsUnavailableError, match="taco-plus download longclip-l"):
        longclip_weights("LongCLIP-L", "release", cache_dir=str(cache))


def test_missing_weights_messages_name_the_download_command(tmp_path, monkeypatch):
    from taco_plus.losses.lpips import LpipsBackboneUnavailableError, LpipsDistance
    from taco_plus.metrics.fid import FidAccumulator, FidUnavailable
    from taco_plus.text.clip_loading import ClipWeightsUnavailableError, load_clip

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LpipsBackboneUnavailableError, match="taco-plus download lpips"):
        LpipsDistance("alex")
    with pytest.raises(FidUnavailable, match="taco-plus download fid"):
        FidAccumulator.inception()
    with pytest.raises(ClipWeightsUnavailableError, match="taco-plus download clip"):
        load_clip("ViT-B-32", "openai", cache_dir=str(tmp_path / "hf"))


def test_offline_mode_is_named_when_a_hub_download_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as the docs advise for offline machines
    code, out, err = run(capsys, "longclip-b")
    assert code == 2 and "(to download)" in out
    assert err.strip().endswith("(HF_HUB_OFFLINE is set: unset it to download)") and len(err.strip().splitlines()) == 1
