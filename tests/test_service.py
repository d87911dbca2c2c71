"""`coverhunter serve` against a real uvicorn server on localhost, with a real HTTP client:
identification of an uploaded file, concurrent requests, and every kind of bad upload
answered 4xx with a message."""
import dataclasses
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
import uvicorn
from synth import melody

from coverhunter.features.cqt import CQTFrontEnd, extract_cqt
from coverhunter.model import CoverHunterNet
from coverhunter.model.checkpoint import load_model
from coverhunter.retrieval.index import ChunkIndex, IndexSpec
from coverhunter.retrieval.search import Searcher, chunk_vectors, index_meta
from coverhunter.retrieval.service import create_app

RATE = 16000


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    """Three synthetic recordings (20 s melodies) indexed with an untrained tiny network;
    the service limits: 1 MB uploads, 30 s recordings."""
    tmp = tmp_path_factory.mktemp("serve")
    p = dataclasses.replace(tiny, index=dataclasses.replace(tiny.index, chunk_s=10.0, hop_s=5.0, top=3),
                            serve=dataclasses.replace(tiny.serve, max_upload_mb=1.0, max_duration_s=30.0))
    torch.manual_seed(0)
    net = CoverHunterNet(p.features.n_bins, p.model, 0).eval()
    ckpt = tmp / "model.pt"
    torch.save({"config": net.config, "model": net.state_dict()}, ckpt)
    rng = np.random.default_rng(0)
    files, feats = [], []
    front = CQTFrontEnd(p.features)
    for i in range(3):
        audio = melody(rng.integers(55, 80, 40), 0.5, RATE, np.array([1.0, 0.5, 0.25]), rng)
        files.append(tmp / f"r{i}.wav")
        sf.write(files[-1], audio, RATE)
        feats.append(extract_cqt([audio], front)[0])
    fps = p.features.frame_rate
    made = [chunk_vectors(net, f, 10.0, 5.0, fps, 8) for f in feats]
    index = ChunkIndex.from_recordings([m[0] for m in made], [m[1] for m in made], 10.0,
                                       ["r0", "r1", "r2"], ["a", "b", "c"], [len(f) / fps for f in feats],
                                       IndexSpec("flat", 4, 4, 16, 64, 1000), index_meta(ckpt, p))
    index.meta["threshold"] = 0.95
    app = create_app(Searcher(index, load_model(ckpt), p), p.serve)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}", files, tmp
    srv.should_exit = True
    thread.join(timeout=10)


def test_health_describes_the_index(server):
    url, _, _ = server
    r = httpx.get(f"{url}/health")
    assert r.status_code == 200
    # 501 frames of 20 s: chunks at 0, 5 and 10 s, and one flush with the end
    assert r.json() | {"model_sha1": None} == {"status": "ok", "recordings": 3, "vectors": 12,
                                                 "kind": "flat", "threshold": 0.95, "model_sha1": None}


def test_an_uploaded_recording_is_identified_and_concurrent_requests_agree(server):
    url, files, _ = server
    data = files[1].read_bytes()
    r = httpx.post(f"{url}/identify?top=2", content=data, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["matches"][0]
    assert (top["work_id"], top["recording_id"], top["decision"]) == ("b", "r1", "cover")
    assert top["score"] == pytest.approx(1.0, abs=1e-4) and len(body["matches"]) == 2
    assert body["duration_s"] == pytest.approx(20.0, abs=0.01)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda f: httpx.post(f"{url}/identify", content=f.read_bytes(), timeout=120),
                                [files[0], files[1], files[2]] * 2))
    assert all(a.status_code == 200 for a in answers)
    assert [a.json()["matches"][0]["recording_id"] for a in answers] == ["r0", "r1", "r2"] * 2


def test_bad_uploads_get_a_4xx_with_a_message(server):
    url, _, tmp = server
    long = tmp / "long.wav"
    sf.write(long, np.zeros(31 * RATE, np.float32), RATE, subtype="PCM_U8")   # 31 s, 0.5 MB
    short = tmp / "short.wav"
    sf.write(short, np.zeros(RATE // 4, np.float32), RATE)
    silent = tmp / "silent.wav"
    sf.write(silent, np.zeros(5 * RATE, np.float32), RATE)
    cases = [(b"", 400, "empty upload"),
             (b"this is not audio" * 100, 422, "not audio"),
             (np.zeros(2**20 + 1, np.uint8).tobytes(), 413, "serve.max_upload_mb"),
             (long.read_bytes(), 413, "serve.max_duration_s"),
             (short.read_bytes(), 422, "serve.min_duration_s"),
             (silent.read_bytes(), 422, "the recording is silent (RMS digital silence, under the "
                                        "-60 dBFS floor of data.min_rms_dbfs)")]
    for data, status, message in cases:
        r = httpx.post(f"{url}/identify", content=data, timeout=60)
        assert (r.status_code, message in r.json()["detail"]) == (status, True), (status, r.text)
    r = httpx.post(f"{url}/identify?top=0", content=long.read_bytes(), timeout=60)
    assert r.status_code == 422 and "top" in r.text
