"""Input pipeline benchmark: our grain train pipeline vs decoding straight from the videos.

Generates real H.264 test videos (default 340x256, 250 frames = 10 s at 25 fps,
like Kinetics clips resized to short side 256), builds them with the
``video_folder`` TFDS builder, then measures, in the same run, clips drawn the
same way (the same frame sampler and RandomResizedCrop box code):

* ours: ``create_train_dataset`` (read the record, decode only the sampled
  JPEG frames with FFmpeg, crop + bilinear resize + flip in one swscale
  pass), one thread;
* baseline: mmaction2's ``PyAVInit`` + ``PyAVDecode`` (``mode='accurate'``):
  read the video file, decode it from the start up to the last sampled frame
  converting every decoded frame to RGB, then the same FFmpeg
  crop/resize/flip code on the sampled RGB frames.

Both run pinned to one CPU core (``--core``), with every thread they start
(FFmpeg's decoding threads, grain's reader thread), so clips/s is clips/s per
core. The two methods alternate in ``--rounds`` rounds and the median round
is reported, which keeps a busy machine from favouring either one.

    python benchmarks/input_pipeline.py                 # 32x224x224 clips, interval 2
    python benchmarks/input_pipeline.py --help
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dualformer_jax.data import (  # noqa: E402
    VideoConfig, build_dataset, create_train_dataset, sample_train_indices, write_video,
)
from dualformer_jax.data.transforms import (  # noqa: E402
    _crop_resize_graph, _whole_pixels, random_resized_crop_box,
)


def make_video(path, rng, num_frames, width, height):
    """A textured background panning slowly, with moving discs and light noise."""
    tex = rng.integers(0, 256, size=(height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(tex).resize((width + 2 * num_frames, height), Image.BICUBIC))
    ys, xs = np.mgrid[0:height, 0:width]
    discs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3), rng.uniform(-3, 3),
              rng.uniform(10, 30), rng.integers(0, 256, 3)) for _ in range(4)]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        f = big[:, t: t + width].astype(np.int16)
        for x, y, vx, vy, r, c in discs:
            f[(xs - (x + vx * t) % width) ** 2 + (ys - (y + vy * t) % height) ** 2 < r * r] = c
        f += rng.integers(-3, 4, size=f.shape, dtype=np.int16)
        frames[t] = np.clip(f, 0, 255)
    write_video(path, frames, fps=25)


def baseline_clip(path, rng, args):
    """What mmaction2's ``PyAVInit`` + ``SampleFrames`` + ``PyAVDecode`` (default
    ``mode='accurate'``) do, followed by the same crop/resize/flip code as ours:
    read the file into memory, open it with PyAV, decode from the first frame,
    converting every decoded frame to an RGB array, and stop after the last
    sampled index; past-the-end indices loop. The sampled RGB frames then go
    through our FFmpeg crop + bilinear resize (+ hflip) graph, on one core."""
    import av

    with open(path, "rb") as f:
        file_obj = io.BytesIO(f.read())
    with av.open(file_obj) as container:
        total = container.streams.video[0].frames
        idx = sample_train_indices(total, args.clip_len, args.frame_interval, 1, rng)[0]
        max_ind = int(idx.max())
        imgs = []
        for i, frame in enumerate(container.decode(video=0)):
            if i > max_ind + 1:
                break
            imgs.append(frame.to_rgb().to_ndarray())
    frames = [imgs[int(i) % len(imgs)] for i in idx]
    h, w = frames[0].shape[:2]
    box = _whole_pixels(random_resized_crop_box(h, w, (0.08, 1.0), (3 / 4, 4 / 3), rng), w, h)
    flip = rng.random() < 0.5
    out = np.empty((len(frames), args.crop, args.crop, 3), np.uint8)
    graph = None
    for t, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if graph is None:
            graph = _crop_resize_graph(frame, box, args.crop, flip)
        frame.pts = t
        graph.push(frame)
        out[t] = graph.pull().to_ndarray()
    return out


def timed(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_videos", type=int, default=6, help="test videos to generate")
    p.add_argument("--num_frames", type=int, default=250, help="frames per video")
    p.add_argument("--width", type=int, default=340)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--clip_len", type=int, default=32)
    p.add_argument("--frame_interval", type=int, default=2)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--num_clips", type=int, default=10, help="clips timed per method and round")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per method")
    p.add_argument("--core", type=int, default=0, help="CPU core to pin the timing to (-1: no pinning)")
    p.add_argument("--workdir", default=None, help="keep videos/dataset here (default: a temp dir)")
    args = p.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="input_bench_")
    manual = os.path.join(workdir, "manual")
    try:
        rng = np.random.default_rng(0)
        paths = []
        t0 = time.time()
        for i in range(args.num_videos):
            path = os.path.join(manual, "train", f"class{i % 2}", f"video{i}.mp4")
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                make_video(path, rng, args.num_frames, args.width, args.height)
            paths.append(path)
        print(f"videos: {args.num_videos} x {args.num_frames} frames {args.width}x{args.height} H.264 "
              f"({time.time() - t0:.1f}s)")
        t0 = time.time()
        build_dataset("video_folder", manual_dir=manual, data_dir=os.path.join(workdir, "data"),
                      config=VideoConfig(name="bench", short_side=min(args.width, args.height)))
        print(f"TFDS build: {time.time() - t0:.1f}s")

        if args.core >= 0 and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {args.core})  # threads started from now on inherit it
        ds = create_train_dataset(
            name="video_folder/bench", data_dir=os.path.join(workdir, "data"), batch_size=1,
            clip_len=args.clip_len, frame_interval=args.frame_interval, crop_size=args.crop,
            flip=True, seed=0, process_index=0, process_count=1, num_workers=0, num_threads=1, prefetch=1)
        it = iter(ds)
        brng = np.random.default_rng(0)
        k = iter(range(10 ** 9))
        methods = {
            "ours (grain + JPEG frames)": lambda: next(it),
            "baseline (PyAV from video)": lambda: baseline_clip(paths[next(k) % len(paths)], brng, args),
        }
        for fn in methods.values():
            fn()  # warm-up
        rates = {m: [] for m in methods}
        for _ in range(args.rounds):
            for m, fn in methods.items():
                rates[m].append(timed(fn, args.num_clips))
        med = {m: float(np.median(r)) for m, r in rates.items()}
        ours, base = med.values()

        pinned = f"pinned to core {args.core}" if args.core >= 0 else "not pinned"
        print(f"\nclips of {args.clip_len}x{args.crop}x{args.crop} (frame_interval {args.frame_interval}), "
              f"{args.rounds} rounds x {args.num_clips} clips per method, {pinned}")
        print(f"{'':28s}{'clips/s per core':>18s}{'  (min - max over rounds)':s}")
        for m, r in rates.items():
            print(f"{m:28s}{med[m]:18.2f}   ({min(r):.2f} - {max(r):.2f})")
        print(f"{'ratio ours / baseline':28s}{ours / base:18.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
