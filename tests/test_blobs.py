"""Blob store: both backends over real HTTP (uvicorn for the local routes, moto's S3 server)."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
import requests
import uvicorn
from fastapi import FastAPI
from moto.server import ThreadedMotoServer

from cluster.blob_signing import BlobError, BlobNotFound, BlobPolicyError, InvalidBlobKey, UploadPolicy, sign_upload, validate_key
from cluster.blob_store import BlobStore
from cluster.blobs import make_blob_store
from cluster.blobs_local import LocalBlobStore
from cluster.blobs_s3 import S3BlobStore
from schemas.settings import Settings
from serve_app.routes import blobs as blob_routes

SECRET = b"test-blob-secret-0123456789abcdef"
HTTP_TIMEOUT_S = 30
TRAVERSAL_KEYS = [
    "", "../escape.txt", "datasets/../../escape.txt", "/etc/passwd", "datasets\\x.wav",
    "datasets//x.wav", "datasets/x.wav/", "datasets/./x.wav", "datasets/.hidden", "datasets/x\x00.wav",
    "datasets/x\n.wav", "datasets/x\u202e.wav", "a" * 1025,
]


class Clock:
    """Unix seconds the local store reads; tests move it forward to expire URLs."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class HttpServer:
    app: FastAPI
    url: str


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServer]:
    app = FastAPI()
    app.include_router(blob_routes.router)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield HttpServer(app, f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def local_store(tmp_path: Path, http_server: HttpServer, clock: Clock) -> LocalBlobStore:
    store = LocalBlobStore(tmp_path / "blobs", secret=SECRET, public_url=http_server.url, clock=clock)
    http_server.app.state.blobs = store
    return store


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3BlobStore:
    return S3BlobStore(
        bucket=f"fathom-test-{uuid.uuid4().hex[:12]}", endpoint_url=s3_endpoint, region="us-east-1",
        access_key_id=None, secret_access_key=None,  # the default chain: env set by s3_endpoint
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> BlobStore:
    return request.getfixturevalue(f"{request.param}_store")


def new_key(name: str = "take.wav") -> str:
    return f"datasets/{uuid.uuid4()}/audio/{name}"


def vendor_upload(upload_info: dict, file_path: Path) -> requests.Response:
    """The vendor client's upload call, verbatim."""
    with open(file_path, "rb") as f:
        return requests.post(
            upload_info["upload_url"], data=upload_info["upload_fields"], files={"file": f}, timeout=HTTP_TIMEOUT_S
        )


def upload_info(store: BlobStore, key: str, max_bytes: int, **kwargs: object) -> dict:
    post = store.presigned_post(key, max_bytes=max_bytes, expires_s=600, **kwargs)
    return {"upload_url": post.url, "upload_fields": dict(post.fields)}


def write_file(tmp_path: Path, data: bytes, name: str = "upload.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def stored_files(store: LocalBlobStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


# --- both backends ---------------------------------------------------------------------------


def test_put_get_size_exists_delete(store: BlobStore) -> None:
    key = new_key()
    assert store.size(key) is None and not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.get_bytes(key)
    store.put_bytes(key, b"RIFF....WAVE")
    assert store.get_bytes(key) == b"RIFF....WAVE"
    assert store.size(key) == 12 and store.exists(key)
    store.put_bytes(key, b"")
    assert store.size(key) == 0 and store.get_bytes(key) == b""
    store.delete(key)
    store.delete(key)  # idempotent
    assert not store.exists(key)
    store.ping()


def test_put_bytes_replaces_atomically(store: BlobStore) -> None:
    key = new_key("features.bin")
    versions = [b"a" * (1 << 20), b"b" * (3 << 19)]
    store.put_bytes(key, versions[0])
    seen: list[bytes] = []
    done = threading.Event()

    def read_continuously() -> None:
        while not done.is_set():
            seen.append(store.get_bytes(key))

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for i in range(12):
            store.put_bytes(key, versions[i % 2])
    finally:
        done.set()
        reader.join()
    assert seen and all(data in versions for data in seen)


def test_delete_prefix_uses_string_prefixes(store: BlobStore) -> None:
    root = f"datasets/{uuid.uuid4()}"
    keys = [f"{root}/a/1.wav", f"{root}/a/2.wav", f"{root}/ab/3.wav", f"{root}/b/4.wav"]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert store.delete_prefix(f"{root}/a/") == 2
    assert [store.exists(k) for k in keys] == [False, False, True, True]
    assert store.delete_prefix(f"{root}/a") == 1  # "ab/3.wav" starts with "a", as in S3
    assert store.exists(keys[3])
    assert store.delete_prefix(f"{root}/a") == 0
    fs = store.arrow_filesystem()  # what Ray Train leaves below its storage path, dot-files included
    marker = store.arrow_path(f"{root}/b/x")[: -len("x")] + ".validate_storage_marker"
    with fs.open_output_stream(marker) as out:
        out.write(b"1")
    assert store.delete_prefix(f"{root}/") == 2
    assert fs.get_file_info(marker).type == pyarrow.fs.FileType.NotFound
    with pytest.raises(InvalidBlobKey):
        store.delete_prefix("")
    with pytest.raises(InvalidBlobKey):
        store.delete_prefix("../")


def test_vendor_presigned_post_stores_the_exact_bytes(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom((5 << 19) + 7)  # 2.5 MiB + 7: several flushes of the streamed body
    key = new_key()
    info = upload_info(store, key, max_bytes=len(data), content_type="audio/wav")
    response = vendor_upload(info, write_file(tmp_path, data))
    assert response.status_code == 204, response.text
    assert store.size(key) == len(data)
    assert store.get_bytes(key) == data


def test_presigned_get_downloads_with_unicode_filename(store: BlobStore) -> None:
    key = new_key()
    data = os.urandom(70_000)
    store.put_bytes(key, data)
    filename = 'Ünïcödé "take" №1 😀; 100%.wav'
    response = requests.get(store.presigned_get(key, expires_s=60, filename=filename), timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text
    assert response.content == data
    header = response.headers["Content-Disposition"]
    assert header.isascii() and header.startswith("attachment;")
    encoded = header.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == filename
    plain = requests.get(store.presigned_get(key, expires_s=60), timeout=HTTP_TIMEOUT_S)
    assert plain.status_code == 200 and plain.content == data
    assert "Content-Disposition" not in plain.headers


def test_arrow_filesystem_round_trip(store: BlobStore) -> None:
    fs = store.arrow_filesystem()
    key = f"datasets/{uuid.uuid4()}/features/part-0.parquet"
    table = pa.table({"file_id": ["a", "b", "c"], "duration_s": [1.5, 2.0, 0.25]})
    fs.create_dir(store.arrow_path(key).rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, store.arrow_path(key), filesystem=fs)
    assert pq.read_table(store.arrow_path(key), filesystem=fs).equals(table)
    assert pq.read_table(pa.BufferReader(store.get_bytes(key))).equals(table)  # same object both ways
    other = f"datasets/{uuid.uuid4()}/features/part-1.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store.put_bytes(other, sink.getvalue().to_pybytes())
    assert pq.read_table(store.arrow_path(other), filesystem=fs).equals(table)


@pytest.mark.parametrize("key", ["../escape.txt", "/etc/passwd", "a\\b"])
def test_every_method_refuses_traversal_keys(store: BlobStore, key: str) -> None:
    calls = [
        lambda: store.put_bytes(key, b"x"), lambda: store.get_bytes(key), lambda: store.size(key),
        lambda: store.delete(key), lambda: store.arrow_path(key),
        lambda: store.presigned_post(key, max_bytes=1, expires_s=60),
        lambda: store.presigned_get(key, expires_s=60),
    ]
    for call in calls:
        with pytest.raises(InvalidBlobKey):
            call()


# --- local backend: keys and signed policies --------------------------------------------------


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_validate_key_refuses(key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        validate_key(key)


@pytest.mark.parametrize("key", ["datasets/0b7c/audio/1f2e.wav", "models/m-1/ckpt/epoch=3.pt", "x", "d/é 1.flac"])
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


def test_upload_url_expires(local_store: LocalBlobStore, clock: Clock, tmp_path: Path) -> None:
    key = new_key()
    post = local_store.presigned_post(key, max_bytes=4, expires_s=30)
    clock.now += 31
    response = vendor_upload({"upload_url": post.url, "upload_fields": post.fields}, write_file(tmp_path, b"data"))
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    assert not local_store.exists(key)


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        ("signature", "upload policy signature does not match"),
        ("policy", "upload policy signature does not match"),
        ("key", "form field 'key' differs from the key this URL was signed for"),
        ("content_type", "form field 'Content-Type' must be 'audio/wav' as signed"),
    ],
)
def test_tampered_upload_is_forbidden(local_store: LocalBlobStore, tmp_path: Path, tamper: str, detail: str) -> None:
    key = new_key()
    info = upload_info(local_store, key, max_bytes=4, content_type="audio/wav")
    fields = info["upload_fields"]
    if tamper == "signature":
        fields["signature"] = ("0" if fields["signature"][0] != "0" else "1") + fields["signature"][1:]
    elif tamper == "policy":  # raise the size cap without re-signing
        policy = UploadPolicy.decode(fields["policy"])
        fields["policy"] = UploadPolicy(policy.key, 10 << 30, policy.expires, policy.content_type).encode()
    elif tamper == "key":
        fields["key"] = new_key()
    else:
        fields["Content-Type"] = "text/html"
    response = vendor_upload(info, write_file(tmp_path, b"data"))
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": detail}
    assert stored_files(local_store) == []


def test_reused_upload_url_conflicts(local_store: LocalBlobStore, tmp_path: Path) -> None:
    key = new_key()
    info = upload_info(local_store, key, max_bytes=5)
    assert vendor_upload(info, write_file(tmp_path, b"first")).status_code == 204
    second = vendor_upload(info, write_file(tmp_path, b"other"))
    assert second.status_code == 409
    assert "already uploaded" in second.json()["detail"]
    assert local_store.get_bytes(key) == b"first"


def test_concurrent_reuse_stores_exactly_one_upload(local_store: LocalBlobStore, tmp_path: Path) -> None:
    key = new_key()
    info = upload_info(local_store, key, max_bytes=1 << 20)
    payloads = [bytes([i]) * (1 << 20) for i in range(4)]
    paths = [write_file(tmp_path, p, f"u{i}.wav") for i, p in enumerate(payloads)]
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda p=p: statuses.append(vendor_upload(info, p).status_code)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [204, 409, 409, 409]
    assert local_store.get_bytes(key) in payloads
    assert stored_files(local_store) == [local_store.root / key]


def test_oversize_upload_is_refused_and_leaves_nothing(local_store: LocalBlobStore, tmp_path: Path) -> None:
    key = new_key()
    declared = 1 << 20
    info = upload_info(local_store, key, max_bytes=declared)
    response = vendor_upload(info, write_file(tmp_path, os.urandom(3 * declared)))
    assert response.status_code == 413
    assert f"{declared}-byte limit" in response.json()["detail"]
    assert not local_store.exists(key)
    assert stored_files(local_store) == []
    small = vendor_upload(info, write_file(tmp_path, b"x" * declared, "fits.wav"))
    assert small.status_code == 204  # the rejected attempt did not consume the URL


def test_malformed_upload_forms(local_store: LocalBlobStore) -> None:
    info = upload_info(local_store, new_key(), max_bytes=4)
    url, fields = info["upload_url"], info["upload_fields"]
    no_file = requests.post(url, data=fields, files={"other": ("x", b"data")}, timeout=HTTP_TIMEOUT_S)
    assert no_file.status_code == 400
    file_first = requests.post(
        url, files=[("file", ("x.wav", b"data"))] + [(k, (None, v)) for k, v in fields.items()],
        timeout=HTTP_TIMEOUT_S,
    )
    assert file_first.status_code == 400 and "last field" in file_first.json()["detail"]
    missing = requests.post(url, data={"key": fields["key"]}, files={"file": b"data"}, timeout=HTTP_TIMEOUT_S)
    assert missing.status_code == 400 and "policy" in missing.json()["detail"]
    not_multipart = requests.post(url, data=b"data", timeout=HTTP_TIMEOUT_S)
    assert not_multipart.status_code == 400
    assert stored_files(local_store) == []


def test_interrupted_upload_never_appears(local_store: LocalBlobStore, http_server: HttpServer) -> None:
    key = new_key()
    info = upload_info(local_store, key, max_bytes=1 << 20)
    request = requests.Request(
        "POST", info["upload_url"], data=info["upload_fields"], files={"file": ("x.wav", os.urandom(1 << 20))}
    ).prepare()
    port = urlsplit(http_server.url).port
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(f"POST /blobs/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
        conn.sendall(request.body[: len(request.body) // 2])
        deadline = time.monotonic() + 10
        while not stored_files(local_store):  # the server is streaming the file to staging
            assert time.monotonic() < deadline, "upload never reached the staging area"
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while stored_files(local_store):
        assert time.monotonic() < deadline, f"partial upload left behind: {stored_files(local_store)}"
        time.sleep(0.02)
    assert not local_store.exists(key)


def test_accept_post_refuses_traversal_even_when_signed(local_store: LocalBlobStore) -> None:
    fields = sign_upload(SECRET, UploadPolicy("../escape.txt", 10, int(time.time()) + 60))
    with pytest.raises(BlobPolicyError) as e:
        local_store.accept_post(fields, io.BytesIO(b"x"))
    assert e.value.status_code == 400
    assert not (local_store.root.parent / "escape.txt").exists()
    key = new_key()
    genuine = local_store.presigned_post(key, max_bytes=10, expires_s=60).fields
    with pytest.raises(BlobPolicyError) as e:
        local_store.accept_post({**genuine, "key": "../../escape.txt"}, io.BytesIO(b"x"))
    assert e.value.status_code == 403
    assert local_store.accept_post(genuine, io.BytesIO(b"x")) == key
    assert local_store.get_bytes(key) == b"x"


# --- local backend: download URLs --------------------------------------------------------------


def test_tampered_or_expired_download_is_forbidden(local_store: LocalBlobStore, clock: Clock) -> None:
    key, other = new_key(), new_key()
    local_store.put_bytes(key, b"secret audio")
    local_store.put_bytes(other, b"other audio")
    url = local_store.presigned_get(key, expires_s=60, filename="a.wav")
    base, query = url.split("?", 1)
    params = dict(parse_qsl(query))

    def get(**changes: str) -> requests.Response:
        return requests.get(f"{base}?{urlencode({**params, **changes})}", timeout=HTTP_TIMEOUT_S)

    assert get().content == b"secret audio"
    flipped = ("0" if params["signature"][0] != "0" else "1") + params["signature"][1:]
    later = str(int(clock.now) + 9999)
    for changes in ({"signature": flipped}, {"key": other}, {"filename": "b.wav"}, {"expires": later}):
        response = get(**changes)
        assert response.status_code == 403, changes
        assert response.json()["detail"] == "download URL signature does not match"
    assert get(key="../escape").status_code == 403
    clock.now += 61
    expired = get()
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]


def test_download_of_deleted_blob_is_not_found(local_store: LocalBlobStore) -> None:
    key = new_key()
    local_store.put_bytes(key, b"x")
    url = local_store.presigned_get(key, expires_s=60)
    local_store.delete(key)
    assert requests.get(url, timeout=HTTP_TIMEOUT_S).status_code == 404


def test_routes_are_off_when_the_app_runs_on_s3(
    http_server: HttpServer, s3_store: S3BlobStore, tmp_path: Path
) -> None:
    http_server.app.state.blobs = s3_store
    upload = requests.post(f"{http_server.url}/blobs/upload", files={"file": b"x"}, timeout=HTTP_TIMEOUT_S)
    download = requests.get(f"{http_server.url}/blobs/download?key=a", timeout=HTTP_TIMEOUT_S)
    for response in (upload, download):
        assert response.status_code == 404
        assert response.json() == {"detail": "Local blob storage is not enabled"}


def test_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LocalBlobStore(tmp_path, secret=b"short", public_url="http://127.0.0.1:1")


def test_make_blob_store_builds_the_configured_backend(tmp_path: Path, s3_endpoint: str) -> None:
    local = make_blob_store(Settings(data_dir=tmp_path, public_url="http://files.example:8000/"), secret=SECRET)
    assert isinstance(local, LocalBlobStore) and local.root == (tmp_path / "blobs").resolve()
    assert local.presigned_post("k/a.wav", max_bytes=1, expires_s=5).url == "http://files.example:8000/blobs/upload"
    bucket = f"fathom-test-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        data_dir=tmp_path, blob_backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket=bucket,
        s3_access_key_id="testing", s3_secret_access_key="testing",
    )
    s3 = make_blob_store(settings, secret=SECRET)
    assert isinstance(s3, S3BlobStore) and s3.arrow_path("k/a.wav") == f"{bucket}/k/a.wav"
    s3.put_bytes("k/a.wav", b"abc")
    assert s3.size("k/a.wav") == 3
    s3.ping()


def test_unreachable_s3_is_a_blob_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(BlobError, match="unreachable|Could not connect"):
        S3BlobStore(
            bucket="fathom-down", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
            access_key_id="testing", secret_access_key="testing",
        )
    assert time.monotonic() - started < 30
