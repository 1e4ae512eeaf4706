"""The presigned-upload checks on a real local blob store (no Ray, no HTTP)."""

from __future__ import annotations

import io

import pytest

from cluster.blob_signing import BlobPolicyError
from cluster.blobs_local import LocalBlobStore
from cluster.uploads import UploadError, display_filename, finish_upload, safe_extension, start_upload
from schemas.settings import Settings

SECRET = b"s" * 32
LIMIT = 10_000  # bytes, max_upload_bytes of these tests


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, max_upload_bytes=LIMIT, upload_url_expiry_s=600)


@pytest.fixture
def blobs(settings) -> LocalBlobStore:
    return LocalBlobStore(settings.blob_root, secret=SECRET, public_url=settings.public_url)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("take 1.wav", "take 1.wav"),
        ("../../etc/passwd.wav", "passwd.wav"),
        ("C:\\Users\\me\\rec.flac", "rec.flac"),
        ("dir/sub/", "sub"),
        ("séance 日本語.mp3", "séance 日本語.mp3"),
        ("a\x00b\nc\x1b.wav", "abc.wav"),
        ("invoice\u202egpj.wav", "invoicegpj.wav"),
    ],
)
def test_display_filename_keeps_only_the_last_component_without_controls(given, shown):
    assert display_filename(given) == shown


@pytest.mark.parametrize("given", ["", "/", "../..", "\x00\x01", " / "])
def test_display_filename_refuses_names_with_nothing_left(given):
    with pytest.raises(UploadError) as e:
        display_filename(given)
    assert e.value.status_code == 400
    assert "no name left" in e.value.message


def test_display_filename_refuses_over_500_characters():
    assert display_filename("x" * 496 + ".wav") == "x" * 496 + ".wav"
    with pytest.raises(UploadError, match="501 characters"):
        display_filename("x" * 497 + ".wav")


@pytest.mark.parametrize(
    ("filename", "content_type", "ext"),
    [
        ("Take.WAV", "audio/wav", ".wav"),
        ("clip", "audio/mpeg", ".mp3"),
        ("clip.bin", "audio/x-flac", ".flac"),
        ("voice.m4a", "application/octet-stream", ".m4a"),
        ("tool.exe", "application/octet-stream", ""),
        ("page.html", "text/html", ""),
        ("clip", "audio/ogg; codecs=vorbis", ".ogg"),
    ],
)
def test_safe_extension_is_a_known_audio_extension_or_empty(filename, content_type, ext):
    assert safe_extension(filename, content_type) == ext


def test_start_upload_signs_a_form_for_the_server_key(blobs, settings):
    post = start_upload(
        blobs, settings, key="datasets/d1/audio/a1", declared_size=1234, content_type="audio/wav", filename="x.wav"
    )
    assert post.url == f"{settings.public_url}/blobs/upload"
    assert post.fields["key"] == "datasets/d1/audio/a1"
    assert post.fields["Content-Type"] == "audio/wav"
    # the signed cap is the declared size: one byte more is refused by the store itself
    with pytest.raises(BlobPolicyError, match="1234-byte limit"):
        blobs.accept_post(post.fields, io.BytesIO(b"\0" * 1235))
    assert blobs.accept_post(post.fields, io.BytesIO(b"\0" * 1234)) == "datasets/d1/audio/a1"


def test_start_upload_refuses_sizes_over_the_limit(blobs, settings):
    start_upload(blobs, settings, key="k/a", declared_size=LIMIT, content_type="audio/wav", filename="a.wav")
    with pytest.raises(UploadError) as e:
        start_upload(blobs, settings, key="k/b", declared_size=LIMIT + 1, content_type="audio/wav", filename="a.wav")
    assert e.value.status_code == 400
    assert e.value.message == f"file size {LIMIT + 1} bytes is over the limit of {LIMIT} bytes"


@pytest.mark.parametrize(
    ("content_type", "filename"),
    [("text/plain", "notes.wav"), ("application/octet-stream", "movie.avi"), ("video/quicktime", "a.mov")],
)
def test_start_upload_refuses_formats_the_decoder_does_not_read(blobs, settings, content_type, filename):
    with pytest.raises(UploadError) as e:
        start_upload(blobs, settings, key="k/c", declared_size=10, content_type=content_type, filename=filename)
    assert e.value.status_code == 400
    assert "unsupported audio format" in e.value.message
    assert "audio/wav" in e.value.message and ".flac" in e.value.message


def test_start_upload_accepts_a_generic_type_with_an_audio_extension(blobs, settings):
    post = start_upload(
        blobs, settings, key="k/d", declared_size=10, content_type="application/octet-stream", filename="a.flac"
    )
    assert post.fields["key"] == "k/d"


def test_finish_upload_requires_the_object(blobs):
    with pytest.raises(UploadError) as e:
        finish_upload(blobs, key="k/missing", declared_size=10)
    assert (e.value.status_code, e.value.message) == (409, "upload not found: POST the file to upload_url first")


def test_finish_upload_returns_the_stored_size(blobs):
    blobs.put_bytes("k/ok", b"abcde")
    assert finish_upload(blobs, key="k/ok", declared_size=5) == 5
    assert finish_upload(blobs, key="k/ok", declared_size=50) == 5
    assert blobs.exists("k/ok")


def test_finish_upload_discards_an_object_larger_than_declared(blobs):
    # a store that does not enforce the signed cap (moto) lets this through; confirm must not
    blobs.put_bytes("k/big", b"x" * 11)
    with pytest.raises(UploadError) as e:
        finish_upload(blobs, key="k/big", declared_size=10)
    assert e.value.status_code == 400
    assert e.value.message.startswith("uploaded 11 bytes, more than the declared 10")
    assert not blobs.exists("k/big")


def test_finish_upload_discards_an_empty_object(blobs):
    blobs.put_bytes("k/empty", b"")
    with pytest.raises(UploadError, match="empty") as e:
        finish_upload(blobs, key="k/empty", declared_size=10)
    assert e.value.status_code == 400
    assert not blobs.exists("k/empty")
