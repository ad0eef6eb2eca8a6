"""Serve a bundle on NVIDIA Triton Inference Server through PyTriton.

PyTriton starts a real ``tritonserver`` (HTTP, gRPC, Prometheus metrics, dynamic batching) and
binds a Python callable to a model whose requests Triton queues and batches. The callable here
is :class:`BundleInference`: it decodes every video of a Triton batch with the runtime's own
decoder (a few threads; OpenCV releases the GIL) and runs ``Recognizer.predict_batch`` once, so
a served answer is exactly ``videploy predict``'s. For AdaFocusV3 that call uses the runtime's
continuous batching: within one Triton batch, a video that exits early leaves the local-encoder
batch and the next waiting video of the same Triton batch takes its place. Requests that arrive
while a batch runs form the next Triton batch; they do not join the running one. Triton's
ensembles cannot express the early exit (they are fixed DAGs), which is why the whole chain runs
here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from videploy.errors import VideployError
from videploy.optional import require
from videploy.serve import protocol
from videploy.serve.libpython import prepend_libpython_dir

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """How to serve a bundle. ``None`` means: the bundle's or Triton's default."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_name: str | None = None  # default: the bundle's model name
    max_batch: int | None = None  # videos per Triton batch; default: the bundle's maximum batch
    max_queue_delay_ms: float = 5.0  # how long Triton holds a request to fill a batch
    top_k: int = 5
    max_upload_mb: float = 64.0
    backend: str = "onnxruntime"
    device: str = "cpu"
    threads: int | None = None  # onnxruntime intra-op threads
    decode_threads: int = 4


@dataclass(frozen=True)
class Endpoints:
    model_name: str
    http: str  # host:port, as tritonclient takes it
    grpc: str
    metrics: str  # the Prometheus URL


class BundleInference:
    """The callable PyTriton runs for each Triton batch: requests in, one response dict per request."""

    def __init__(self, recognizer: Any, top_k: int, max_upload_bytes: int, batch_size: int, decode_threads: int = 4, workdir: str | Path | None = None):
        self.rec = recognizer
        self.top_k = min(int(top_k), recognizer.manifest.num_classes)
        self.max_upload_bytes = int(max_upload_bytes)
        self.batch_size = int(batch_size)
        self.adaptive = recognizer.adaptive is not None
        self._own_workdir = workdir is None
        # uploads are written here for the decoder; mkdtemp makes it private (0700)
        self.workdir = Path(tempfile.mkdtemp(prefix="videploy-serve-")) if workdir is None else Path(workdir)
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(decode_threads)), thread_name_prefix="videploy-decode")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        # a request may carry several videos (its batch dimension); each row is one video
        rows: list[tuple[int, dict[str, np.ndarray]]] = []  # (request number, that video's tensors)
        for r, request in enumerate(requests):
            given = {name: np.asarray(request[name]) for name in (protocol.VIDEO, protocol.FRAMES) if name in request}
            n = min(a.shape[0] for a in given.values()) if given else 1  # Triton gives every input the same batch size
            rows += [(r, {name: a[i] for name, a in given.items()}) for i in range(n)]
        prepared = list(self._pool.map(self._prepare, [tensors for _, tensors in rows]))
        good = [p for p in prepared if not isinstance(p, str)]
        predictions = iter(self.rec.predict_batch(good, top_k=self.top_k, batch_size=self.batch_size, continuous=self.adaptive)) if good else iter(())
        answers = [protocol.error_response(p, self.top_k) if isinstance(p, str) else self._answer(next(predictions)) for p in prepared]
        if not good:
            # nothing in this batch could be served: say so as a Triton error too (a client's
            # infer() raises with the reasons instead of returning empty results)
            from pytriton.exceptions import PyTritonBadParameterError

            raise PyTritonBadParameterError("; ".join(dict.fromkeys(p for p in prepared if isinstance(p, str))))
        per_request: list[list[dict[str, np.ndarray]]] = [[] for _ in requests]
        for (r, _), answer in zip(rows, answers):
            per_request[r].append(answer)
        return [{k: np.stack([a[k] for a in answers_r]) for k in answers_r[0]} for answers_r in per_request]

    def _prepare(self, tensors: dict[str, np.ndarray]) -> Any:
        """A decoded VideoInput, or the error message for this video."""
        try:
            source = protocol.parse_request(tensors, self.max_upload_bytes)
            if isinstance(source, np.ndarray):
                return dataclasses.replace(self.rec.prepare(source), display_frames=None)
            path = self.workdir / f"upload-{uuid.uuid4().hex}"
            try:
                path.write_bytes(source.data)
                vi = self.rec.prepare(path)
            except VideployError as exc:
                raise VideployError(str(exc).replace(repr(str(path)), "the uploaded file").replace(str(path), "the uploaded file")) from None
            finally:
                path.unlink(missing_ok=True)
            return dataclasses.replace(vi, source="<upload>", display_frames=None)
        except VideployError as exc:
            return str(exc)

    def _answer(self, prediction: Any) -> dict[str, np.ndarray]:
        top = [(c.index, c.probability, c.name) for c in prediction.top]
        exit_step = prediction.adaptive.exit_step if prediction.adaptive is not None else -1
        return protocol.response(top, self.top_k, exit_step=exit_step, gflops=prediction.gflops)


def check_pytriton_numpy() -> None:
    """Refuse a NumPy that PyTriton's stub cannot exchange arrays with (they would come back empty)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requirements = metadata.requires("nvidia-pytriton") or []
    except metadata.PackageNotFoundError:
        return  # a source install of PyTriton: nothing recorded to check against
    for text in requirements:
        req = Requirement(text)
        if req.name == "numpy" and not req.marker and not req.specifier.contains(np.__version__, prereleases=True):
            pytriton_version = metadata.version("nvidia-pytriton")
            raise VideployError(
                f"PyTriton {pytriton_version} needs numpy{req.specifier} (its Triton Python-backend stub is built against that NumPy: "
                f"with numpy {np.__version__} the server answers with empty tensors); install the serving extra in its own "
                f"environment so pip picks a matching NumPy: pip install 'videploy[serve]' (or pip install 'numpy{req.specifier}')"
            )


def serve(
    bundle: str | Path,
    options: ServeOptions = ServeOptions(),
    on_ready: Callable[[Endpoints], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``bundle`` until ``stop`` is set, SIGINT or SIGTERM arrives, or the server dies.

    ``on_ready`` is called once Triton has loaded the model and answers on every endpoint.
    Signal handlers are installed only when called from the main thread.
    """
    purpose = "videploy serve (Triton Inference Server)"
    require("pytriton.triton", purpose)
    from pytriton.client.exceptions import PyTritonClientError
    from pytriton.exceptions import PyTritonError
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig
    from tritonclient.utils import InferenceServerException

    from videploy.runtime import load
    from videploy.runtime.video import quiet_decoder_logs

    check_pytriton_numpy()
    if options.top_k < 1:
        raise VideployError(f"top-k must be >= 1, got {options.top_k}")
    if options.max_upload_mb <= 0:
        raise VideployError(f"the upload limit must be positive, got {options.max_upload_mb} MB")
    if options.max_batch is not None and options.max_batch < 1:
        raise VideployError(f"--max-batch must be >= 1, got {options.max_batch}")
    if options.model_name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", options.model_name):
        raise VideployError(f"model name {options.model_name!r} may only contain letters, digits, '.', '_' and '-' (Triton's rule)")
    _check_ports_free(options)
    # the server process (and the stub it starts) inherits os.environ when Triton starts
    prepend_libpython_dir(os.environ)
    quiet_decoder_logs()  # a bad upload is answered with an error; FFmpeg's lines would only flood the log

    backend_options = {} if options.threads is None else {"threads": options.threads}
    rec = load(bundle, backend=options.backend, device=options.device, **backend_options)
    m = rec.manifest
    max_batch = m.batch.max if options.max_batch is None else int(options.max_batch)
    model_name = options.model_name or re.sub(r"[^A-Za-z0-9._-]", "_", m.model_name)
    infer = BundleInference(
        rec, options.top_k, int(options.max_upload_mb * 2**20), batch_size=min(max_batch, m.batch.max), decode_threads=options.decode_threads
    )

    def tensors(decls: Sequence[protocol.TensorDecl]) -> list[Any]:
        return [Tensor(name=d.name, dtype=d.dtype, shape=d.shape, optional=d.optional) for d in decls]

    stop = stop or threading.Event()
    restore = _install_signal_handlers(stop)
    triton = None
    try:
        triton = Triton(config=TritonConfig(
            http_address=options.host,
            grpc_address=options.host,
            metrics_address=options.host,
            http_port=options.http_port,
            grpc_port=options.grpc_port,
            metrics_port=options.metrics_port,
            exit_timeout_secs=10,  # in-flight requests get this long to finish on shutdown
        ))
        triton.bind(
            model_name=model_name,
            infer_func=infer,
            inputs=tensors(protocol.inputs()),
            outputs=tensors(protocol.outputs(infer.top_k)),
            config=ModelConfig(
                max_batch_size=max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(options.max_queue_delay_ms * 1000)),
            ),
            strict=True,
        )
        try:
            triton.run()
        except (PyTritonError, PyTritonClientError, InferenceServerException, TimeoutError) as exc:
            raise VideployError(
                f"Triton Inference Server could not start or load {model_name!r} ({type(exc).__name__}: {str(exc).strip()[-2000:]}); "
                "Triton's log above says why"
            ) from None
        if on_ready is not None:
            on_ready(Endpoints(
                model_name=model_name,
                http=f"{options.host}:{options.http_port}",
                grpc=f"{options.host}:{options.grpc_port}",
                metrics=f"http://{options.host}:{options.metrics_port}/metrics",
            ))
        while not stop.wait(0.5):
            if not triton.is_alive():
                raise VideployError("Triton Inference Server stopped unexpectedly; its log above says why")
    finally:
        if triton is not None:
            triton.stop()
        restore()
        infer.close()
        rec.close()


def _check_ports_free(options: ServeOptions) -> None:
    """Fail at once on a busy port (tritonserver would exit and PyTriton wait two minutes for it)."""
    for flag, port in (("--http-port", options.http_port), ("--grpc-port", options.grpc_port), ("--metrics-port", options.metrics_port)):
        with socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a port in TIME_WAIT is free
            try:
                sock.bind((options.host, port))
            except OSError as exc:
                raise VideployError(f"cannot listen on {options.host}:{port} ({flag}): {exc.strerror or exc}; pick a free port with {flag}") from None


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: stop.set())

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore
