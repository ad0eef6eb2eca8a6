"""``videploy serve`` for real: a Triton server on loopback, answered through tritonclient.

Two servers (a static and an AdaFocusV3 toy bundle) start once for the module as
``videploy serve`` subprocesses and stop with SIGINT / SIGTERM at the end, which the last test
checks. Everything is bounded: server start, each request, the load test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.runtime.toys import ToyAdaFocus, ToyStatic, adaptive_bundle, static_bundle
from tests.serve.conftest import require_serving
from videploy.cli import main
from videploy.runtime.samples import sample_video_path, write_synthetic_video

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120
# exits 3, 3, 1, 2, 0, 0 on the videos below: every exit is taken by some video
THRESHOLDS = (0.0005, 0.5, 1.2, float("inf"))
UPLOAD_LIMIT_MB = 1


@pytest.fixture(scope="module", autouse=True)
def _serving_installed():
    require_serving()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("videos")
    specs = [("moving", 12, (48, 64)), ("index", 20, (40, 56)), ("moving", 30, (64, 48)), ("index", 9, (32, 32)), ("moving", 16, (36, 60))]
    return [sample_video_path(), *(write_synthetic_video(d / f"v{i}.mp4", n, size, pattern=p) for i, (p, n, size) in enumerate(specs))]


@dataclass
class Server:
    name: str
    bundle: Path
    proc: subprocess.Popen
    http: str
    grpc: str
    metrics: str
    log: Path


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_server(bundle: Path, model: str, log: Path, *extra: str) -> Server:
    import tritonclient.http as httpclient

    http, grpc, metrics = free_ports(3)
    tmp = log.with_suffix(".tmp")  # the server's temporary files, checked after shutdown
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "videploy", "serve", str(bundle), "--http-port", str(http), "--grpc-port", str(grpc),
           "--metrics-port", str(metrics), "--threads", "1", "--decode-threads", "2", *extra]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    server = Server(model, bundle, proc, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"http://127.0.0.1:{metrics}/metrics", log)
    deadline = time.monotonic() + START_TIMEOUT_S
    client = httpclient.InferenceServerClient(server.http, connection_timeout=2, network_timeout=5)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"videploy serve exited with {proc.returncode} before it was ready:\n{log.read_text()[-4000:]}")
        try:
            if client.is_model_ready(model):
                return server
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"videploy serve was not ready after {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    static = static_bundle(d / "static", ToyStatic().eval(), labels=[f"label {i}" for i in range(7)])
    ada = adaptive_bundle(d / "ada", ToyAdaFocus().eval(), thresholds=THRESHOLDS)
    started = {}
    try:
        started["static"] = start_server(static, "toy_static", d / "static.log", "--max-upload-mb", str(UPLOAD_LIMIT_MB))
        # a Triton batch larger than the bundle's (4): exited videos are replaced from it
        started["ada"] = start_server(ada, "toy_adafocus", d / "ada.log", "--max-batch", "8", "--max-queue-delay-ms", "20")
        yield started
    finally:
        for s in started.values():
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(10)


def predicted(bundle: Path, videos: list[Path], capsys) -> list[dict]:
    """``videploy predict``'s answers, the reference every served answer must equal."""
    capsys.readouterr()
    assert main(["predict", str(bundle), *map(str, videos), "--json", "--threads", "1", "--top-k", "5"]) == 0
    return json.loads(capsys.readouterr().out)["results"]


def video_input(module, path: Path):
    x = module.InferInput("video", [1, 1], "BYTES")
    x.set_data_from_numpy(np.array([[path.read_bytes()]], dtype=object))
    return x


def infer(client, module, name: str, inputs) -> dict[str, np.ndarray]:
    r = client.infer(name, inputs)
    return {n: r.as_numpy(n)[0] for n in ("top_indices", "top_probabilities", "top_labels", "exit_step", "gflops", "error")}


def assert_same(answer: dict[str, np.ndarray], expected: dict) -> None:
    assert answer["error"][0] == b""
    assert answer["top_indices"].tolist() == [t["index"] for t in expected["top"]]
    np.testing.assert_allclose(answer["top_probabilities"], [t["probability"] for t in expected["top"]], rtol=1e-5, atol=1e-7)
    names = [t["label"] or f"class {t['index']}" for t in expected["top"]]
    assert [s.decode() for s in answer["top_labels"]] == names
    exit_step = expected["adaptive"]["exit_step"] if "adaptive" in expected else -1
    assert int(answer["exit_step"][0]) == exit_step
    assert float(answer["gflops"][0]) == pytest.approx(expected["gflops"], rel=1e-6)


@pytest.mark.parametrize("kind", ["static", "ada"])
def test_http_and_grpc_answer_like_predict(servers, videos, capsys, kind):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    s = servers[kind]
    expected = predicted(s.bundle, videos, capsys)
    if kind == "ada":
        assert sorted({e["adaptive"]["exit_step"] for e in expected}) == [0, 1, 2, 3]  # every exit is exercised
    http = httpclient.InferenceServerClient(s.http, network_timeout=30)
    grpc = grpcclient.InferenceServerClient(s.grpc)
    for path, exp in zip(videos, expected):
        assert_same(infer(http, httpclient, s.name, [video_input(httpclient, path)]), exp)
        assert_same(infer(grpc, grpcclient, s.name, [video_input(grpcclient, path)]), exp)
    # decoded frames instead of a file: the same as predicting the frame array
    from videploy import runtime

    cap = cv2.VideoCapture(str(videos[2]))
    frames = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for ok, f in iter(cap.read, (False, None)) if ok])
    cap.release()
    x = grpcclient.InferInput("frames", [1, *frames.shape], "UINT8")
    x.set_data_from_numpy(frames[None])
    api = runtime.load(s.bundle, threads=1).predict(frames, top_k=5).to_dict()
    assert_same(infer(grpc, grpcclient, s.name, [x]), api)
    meta = http.get_model_metadata(s.name)
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"video": "BYTES", "frames": "UINT8"}


def test_bounded_concurrent_load(servers, videos, capsys):
    """40 requests from 8 clients (HTTP and gRPC), within 60 s: none fails or is lost, each is right."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    s = servers["ada"]
    expected = predicted(s.bundle, videos, capsys)
    n_requests, n_clients, limit_s = 40, 8, 60.0
    payloads = [videos[i % len(videos)].read_bytes() for i in range(n_requests)]

    def client_loop(c: int) -> list[tuple[int, float, dict]]:
        # even clients speak HTTP, odd ones gRPC; each sends every n_clients-th request in turn
        module = grpcclient if c % 2 else httpclient
        client = grpcclient.InferenceServerClient(s.grpc) if c % 2 else httpclient.InferenceServerClient(s.http, network_timeout=limit_s)
        out = []
        for i in range(c, n_requests, n_clients):
            x = module.InferInput("video", [1, 1], "BYTES")
            x.set_data_from_numpy(np.array([[payloads[i]]], dtype=object))
            t0 = time.perf_counter()
            answer = infer(client, module, s.name, [x])
            out.append((i, time.perf_counter() - t0, answer))
        return out

    before = metric(s.metrics, "nv_inference_exec_count", s.name)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        results = [r for rs in pool.map(client_loop, range(n_clients), timeout=limit_s) for r in rs]
    wall = time.perf_counter() - t0
    assert sorted(i for i, _, _ in results) == list(range(n_requests))  # none lost
    for i, _, answer in results:
        assert_same(answer, expected[i % len(videos)])
    batches = metric(s.metrics, "nv_inference_exec_count", s.name) - before
    lat = np.array([dt for _, dt, _ in results]) * 1000
    report = (
        f"serve load test (toy AdaFocusV3, {n_clients} clients, {n_requests} requests): {n_requests / wall:.1f} req/s, "
        f"p50 {np.percentile(lat, 50):.0f} ms, p99 {np.percentile(lat, 99):.0f} ms, {batches:.0f} Triton batches"
    )
    print(report)
    assert wall < limit_s
    assert batches < n_requests  # dynamic batching put several requests into one execution


def metric(url: str, name: str, model: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") and f'model="{model}"' in line)


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(servers, videos, capsys):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    s = servers["static"]
    http = httpclient.InferenceServerClient(s.http, network_timeout=30)
    grpc = grpcclient.InferenceServerClient(s.grpc)

    def bytes_input(module, data: bytes):
        x = module.InferInput("video", [1, 1], "BYTES")
        x.set_data_from_numpy(np.array([[data]], dtype=object))
        return x

    cases = [
        ([bytes_input(httpclient, b"this is not a video\n" * 50)], "not a video OpenCV can open"),
        ([bytes_input(httpclient, os.urandom(UPLOAD_LIMIT_MB * 2**20 + 10))], "more than this server's limit of 1 MB"),
        ([bytes_input(httpclient, b"")], "'video' is empty"),
    ]
    frames = httpclient.InferInput("frames", [1, 4, 8, 8, 3], "UINT8")
    frames.set_data_from_numpy(np.zeros((1, 4, 8, 8, 3), np.uint8))
    cases.append(([bytes_input(httpclient, b"x"), frames], r"exactly one of the inputs .* it carried \['video', 'frames'\]"))
    wrong_channels = httpclient.InferInput("frames", [1, 4, 8, 8, 4], "UINT8")
    wrong_channels.set_data_from_numpy(np.zeros((1, 4, 8, 8, 4), np.uint8))
    wrong_dtype = httpclient.InferInput("frames", [1, 4, 8, 8, 3], "FP32")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 4, 8, 8, 3), np.float32))
    cases += [([wrong_channels], "unexpected shape"), ([wrong_dtype], "FP32")]
    for inputs, message in cases:
        with pytest.raises(InferenceServerException, match=message):
            http.infer(s.name, inputs)
    with pytest.raises(InferenceServerException, match="not a video OpenCV can open"):
        grpc.infer(s.name, [bytes_input(grpcclient, b"\x00" * 1000)])
    # the server still answers, and a good request sent beside a bad one is served
    expected = predicted(s.bundle, videos[:1], capsys)[0]
    assert_same(infer(http, httpclient, s.name, [video_input(httpclient, videos[0])]), expected)
    two = httpclient.InferInput("video", [2, 1], "BYTES")
    two.set_data_from_numpy(np.array([[videos[0].read_bytes()], [b"garbage"]], dtype=object))
    r = http.infer(s.name, [two])
    assert r.as_numpy("top_indices")[0].tolist() == [t["index"] for t in expected["top"]]
    assert b"not a video" in r.as_numpy("error")[1][0] and r.as_numpy("top_indices")[1].tolist() == [-1] * 5
    assert s.proc.poll() is None


def test_metrics_endpoint(servers):
    import urllib.request

    text = urllib.request.urlopen(servers["static"].metrics, timeout=10).read().decode()
    assert 'nv_inference_request_success{model="toy_static"' in text


def test_busy_port_is_reported_at_once(tmp_path, capsys):
    bundle = static_bundle(tmp_path / "b", ToyStatic().eval())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        http, grpc = free_ports(2)
        t0 = time.monotonic()
        code = main(["serve", str(bundle), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(port)])
    assert code == 2 and time.monotonic() - t0 < 30
    assert f"cannot listen on 127.0.0.1:{port} (--metrics-port)" in capsys.readouterr().err


def test_clean_shutdown_on_sigint_and_sigterm(servers):
    """Last in the module: stops both servers and checks they exit 0 and free their ports."""
    for s, sig in ((servers["static"], signal.SIGINT), (servers["ada"], signal.SIGTERM)):
        s.proc.send_signal(sig)
        assert s.proc.wait(timeout=60) == 0, s.log.read_text()[-4000:]
        assert "videploy serve: stopped" in s.log.read_text()
        assert not list(s.log.with_suffix(".tmp").glob("videploy-serve-*"))  # uploads' directory removed
        for address in (s.http, s.grpc):
            host, port = address.rsplit(":", 1)
            with socket.socket() as sock, pytest.raises(OSError):
                sock.settimeout(2)
                sock.connect((host, int(port)))

