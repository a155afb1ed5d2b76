"""Avatars: CRUD, portrait validation, preparation task (status, progress, idempotency, failure)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from .conftest import png_bytes

API = "/api/v1"


def _create(client, tenant, **kw):
    r = client.post(f"{API}/avatars", json={"name": "Ana", "engine": "simple", **kw}, headers=tenant.headers["operator"])
    assert r.status_code == 201, r.text
    return r.json()


def _upload(client, tenant, avatar_id, data, name="p.png"):
    return client.post(f"{API}/avatars/{avatar_id}/portrait", files={"file": (name, data, "image/png")},
                       headers=tenant.headers["operator"])


def test_crud_and_audit(client, tenant):
    av = _create(client, tenant, fps=30, voice="espeak")
    h = tenant.headers["operator"]
    assert client.get(f"{API}/avatars/{av['id']}", headers=tenant.headers["worker"]).json()["fps"] == 30
    assert client.patch(f"{API}/avatars/{av['id']}", json={"name": "Bea"}, headers=h).json()["name"] == "Bea"
    assert [a["id"] for a in client.get(f"{API}/avatars", headers=h).json()] == [av["id"]]
    assert client.delete(f"{API}/avatars/{av['id']}", headers=h).status_code == 204
    assert client.get(f"{API}/avatars/{av['id']}", headers=h).status_code == 404
    log = client.get(f"{API}/audit", params={"resource": "avatar"}, headers=tenant.headers["admin"]).json()
    assert [e["action"] for e in log] == ["create", "update", "delete"]
    assert log[1]["changes"] == {"name": {"from": "Ana", "to": "Bea"}}


def test_portrait_upload_prepares_with_the_engine(client, tenant):
    av = _create(client, tenant)
    r = _upload(client, tenant, av["id"], png_bytes(320, 400))
    assert r.status_code == 202, r.text
    got = client.get(f"{API}/avatars/{av['id']}", headers=tenant.headers["viewer"]).json()
    assert got["status"] == "ready" and got["progress"] == 1.0
    assert got["prep_metadata"]["engine"] == "simple"
    assert got["assets_dir"] and got["portrait_sha256"]
    img = client.get(f"{API}/avatars/{av['id']}/portrait", headers=tenant.headers["worker"])
    assert img.headers["content-type"] == "image/png" and Image.open(io.BytesIO(img.content)).size == (320, 400)


def test_a_prepared_avatar_has_a_preview_of_it_speaking(client, tenant, other_tenant):
    import av

    a = _create(client, tenant)
    h = tenant.headers["viewer"]
    assert "no preview yet: it is pending" in client.get(f"{API}/avatars/{a['id']}/preview", headers=h).json()["detail"]
    _upload(client, tenant, a["id"], png_bytes(320, 400))
    got = client.get(f"{API}/avatars/{a['id']}", headers=h).json()
    assert got["prep_metadata"]["preview"]["status"] == "ready", got["prep_metadata"]
    r = client.get(f"{API}/avatars/{a['id']}/preview", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(r.content)) as c:
        assert c.streams.video and c.streams.audio  # a face and a voice
        assert c.duration / 1e6 > 2.0
    # another organisation's people do not see it
    assert client.get(f"{API}/avatars/{a['id']}/preview", headers=other_tenant.headers["viewer"]).status_code == 404


def test_the_voices_a_console_offers_are_the_ones_an_avatar_may_name(client, tenant):
    v = client.get(f"{API}/voices", headers=tenant.headers["viewer"]).json()
    assert v["checked"] and "espeak" in v["en"] and "espeak" in v["zh"]
    piper = [n for n in v["en"] if n.startswith("piper/")]
    assert piper, v  # the set-up's English voice
    assert _create(client, tenant, voice=piper[0])["voice"] == piper[0]
    r = client.post(f"{API}/avatars", json={"name": "X", "voice": "piper/none.onnx"}, headers=tenant.headers["operator"])
    assert r.status_code == 422 and "available: " + ", ".join(v["en"]) in r.json()["detail"]


def test_no_preview_says_why(client, tenant, monkeypatch):
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "avatar_preview", "off")
    a = _create(client, tenant)
    _upload(client, tenant, a["id"], png_bytes(320, 400))
    got = client.get(f"{API}/avatars/{a['id']}", headers=tenant.headers["viewer"]).json()
    assert got["status"] == "ready" and got["prep_metadata"]["preview"]["status"] == "skipped"
    r = client.get(f"{API}/avatars/{a['id']}/preview", headers=tenant.headers["viewer"])
    assert r.status_code == 404 and "ADMIN_AVATAR_PREVIEW=off" in r.json()["detail"]


def test_exif_orientation_is_applied(client, tenant, monkeypatch):
    seen = {}

    def fake_prepare(engine, image, out_dir, **settings):
        seen["shape"] = image.shape
        return {"engine": engine}

    monkeypatch.setattr("avatar.engines.prepare_avatar", fake_prepare)
    av = _create(client, tenant)
    # stored 400 wide x 300 high, EXIF says "rotate 90": the engine must get it upright (300 x 400)
    assert _upload(client, tenant, av["id"], png_bytes(400, 300, exif_orientation=6, fmt="JPEG")).status_code == 202
    assert seen["shape"] == (400, 300, 3)


@pytest.mark.parametrize("data,needle", [
    (b"GIF89a" + b"\0" * 100, "not a JPEG, PNG or WebP"),
    (b"%PDF-1.4 hello", "not a JPEG, PNG or WebP"),
    (png_bytes(100, 100), "at least 256"),
    (png_bytes(400, 400)[:200], "could not be decoded"),
])
def test_bad_portraits_are_refused_with_a_clear_sentence(client, tenant, data, needle):
    av = _create(client, tenant)
    r = _upload(client, tenant, av["id"], data)
    assert r.status_code == 422 and needle in r.json()["detail"]
    assert client.get(f"{API}/avatars/{av['id']}", headers=tenant.headers["viewer"]).json()["status"] == "pending"


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h pixels (a decompression bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = zlib.compress(b"\0" * (w // 8 + 1) * 16, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_decompression_bomb_and_size_limits(client, tenant, monkeypatch):
    av = _create(client, tenant)
    for w, h in ((60000, 60000), (8000, 6000)):  # past Pillow's own guard, and past ours (40 MP)
        r = _upload(client, tenant, av["id"], _bomb_png(w, h))
        assert r.status_code == 422 and "megapixel" in r.json()["detail"]
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "max_portrait_bytes", 1000)
    r = _upload(client, tenant, av["id"], png_bytes(400, 400, color=None) + b"\0" * 2000)
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_preparation_error_marks_the_avatar_failed(client, tenant, monkeypatch):
    from avatar.engines import PreparationError

    def no_face(engine, image, out_dir, **settings):
        raise PreparationError("No face was found in the photo; upload a clear frontal portrait.")

    monkeypatch.setattr("avatar.engines.prepare_avatar", no_face)
    av = _create(client, tenant)
    _upload(client, tenant, av["id"], png_bytes())
    got = client.get(f"{API}/avatars/{av['id']}", headers=tenant.headers["viewer"]).json()
    assert got["status"] == "failed" and got["status_detail"].startswith("No face")


def test_preparation_is_idempotent(client, tenant, monkeypatch):
    from admin.worker import prepare_avatar_job

    calls = []

    def counting(engine, image, out_dir, **settings):
        calls.append(settings)
        (out_dir / "asset.bin").write_bytes(b"x")
        return {"engine": engine}

    monkeypatch.setattr("avatar.engines.prepare_avatar", counting)
    av = _create(client, tenant, width=256, height=256, fps=20)
    _upload(client, tenant, av["id"], png_bytes())
    assert prepare_avatar_job(av["id"]) == "ready"  # a redelivered task does nothing
    assert len(calls) == 1 and calls[0] == {"width": 256, "height": 256, "fps": 20}
    client.patch(f"{API}/avatars/{av['id']}", json={"fps": 25}, headers=tenant.headers["operator"])
    assert len(calls) == 2  # new settings: prepared again


def test_gpu_engines_go_to_the_gpu_queue():
    from admin.worker import queue_for_engine

    assert queue_for_engine("flashtalk") == "gpu"
    assert queue_for_engine("portrait") == queue_for_engine("simple") == "default"
