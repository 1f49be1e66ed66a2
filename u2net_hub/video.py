"""Videos in and out with PyAV (its wheels bundle FFmpeg), frames batched through :func:`predict`.

A video is decoded and encoded as a stream: at most ``batch_size`` frames are
held at a time, so a ten-minute film costs what a batch costs. The output has
the input's frame count, size and timing (each frame keeps its timestamp), and
its audio where the output container can hold it (copied when the codec fits,
else re-encoded to AAC).

Two outputs:

* ``format="mask"``: the masks as a grey H.264 video in ``.mp4`` (yuv420p, or
  yuv444p when a side is odd, which 4:2:0 cannot hold): plays everywhere and
  every editor takes it as a luma matte.
* ``format="rgba"``: the cutout with a real alpha channel as ProRes 4444 in
  ``.mov`` (``prores_ks``, yuva444p10le). Chosen over VP9-with-alpha WebM
  because the alpha is stored as its own full-resolution plane (4:4:4, no
  chroma smearing along the cut edge), every editing and compositing tool reads
  it, and FFmpeg's own ProRes decoder keeps the alpha, whereas its native VP9
  decoder drops WebM alpha (only libvpx keeps it). The price is size: ProRes is
  an intermediate codec, several times larger than VP9; browsers do not play it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .inference import _check_batch_size, predict
from .processing import to_mask

__all__ = ["predict_video", "VideoError", "VideoResult", "VIDEO_EXTENSIONS", "is_video_file", "output_name"]

#: Extensions treated as videos (a .gif only when it has more than one frame).
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif"}
FORMATS = ("mask", "rgba")
_SUFFIX = {"mask": ".mp4", "rgba": ".mov"}
#: Audio codecs each output container takes as they are; others are re-encoded to AAC.
_AUDIO_COPY = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be",
             "pcm_f32le", "pcm_f32be"},
}


class VideoError(RuntimeError):
    """A video that cannot be read or written: ``str()`` is "<file>: <reason>", ``reason`` the reason alone."""

    def __init__(self, source: Any, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


def _why(error: Exception) -> str:
    """FFmpeg's own words, without PyAV's errno and file name decoration."""
    return getattr(error, "strerror", None) or str(error)


@dataclass
class VideoResult:
    """What was written: frames, size, frame rate and what happened to the audio."""

    path: Path
    frames: int
    width: int
    height: int
    rate: Any
    audio: str | None


def output_name(stem: str, format: str) -> str:
    """The file name a video's output gets: ``<stem>.mp4`` for masks, ``<stem>.mov`` for cutouts."""
    return f"{stem}{_SUFFIX[format]}"


def is_video_file(path: str | Path) -> bool:
    """Whether `u2net predict` treats this file as a video (an animated GIF is one, a still GIF an image)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        return False
    if suffix != ".gif":
        return True
    from PIL import Image

    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except Exception:  # noqa: BLE001 - unreadable: let the image path report it
        return False


def _video_stream(output, codec: str, rate, width: int, height: int, time_base):
    stream = output.add_stream(codec, rate=rate)
    stream.width, stream.height = width, height
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    return stream


def predict_video(
    model: Any,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str = "mask",
    batch_size: int = 8,
    normalize: bool = False,
    threshold: float | None = None,
    fast: bool = True,
    compile: bool = False,
    progress: bool = True,
) -> VideoResult:
    """Predict every frame of a video and write the mask video or the alpha cutout, streamed.

    Args:
        model: a U2Net (on the device to run on).
        source: any video PyAV reads (mp4, mov, webm, mkv, avi, animated gif, ...).
        output: the file to write (``.mp4`` for masks, ``.mov`` for cutouts); written under a
            temporary name and renamed at the end, so a failure leaves no half file.
        format: "mask" (grey H.264) or "rgba" (ProRes 4444 with alpha).
        batch_size: frames per forward pass (also the most frames held in memory).
        normalize, threshold, fast, compile: as in :func:`u2net_hub.predict`.
        progress: show a tqdm bar (frames).

    Returns:
        A :class:`VideoResult`. Raises :class:`VideoError` for a video that cannot be decoded.
    """
    import av

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    batch_size = _check_batch_size(batch_size)
    source, output = Path(source), Path(output)
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoError(source, f"cannot open the video ({_why(error)})") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.part{output.suffix}")
    try:
        if not container.streams.video:
            raise VideoError(source, "no video stream in this file")
        vin = container.streams.video[0]
        vin.thread_type = "AUTO"
        ain = container.streams.audio[0] if container.streams.audio else None
        width, height = vin.codec_context.width, vin.codec_context.height
        if not width or not height:
            raise VideoError(source, "the video stream declares no frame size")
        rate = vin.average_rate or vin.guessed_rate or 25
        time_base = vin.time_base or (1 / rate)
        options = {"movflags": "+faststart"} if output.suffix.lower() == ".mp4" else {}
        sink = av.open(str(tmp), "w", options=options)
        try:
            if format == "mask":
                vout = _video_stream(sink, "libx264", rate, width, height, time_base)
                vout.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
                vout.options = {"crf": "12", "preset": "medium"}
            else:
                vout = _video_stream(sink, "prores_ks", rate, width, height, time_base)
                vout.pix_fmt = "yuva444p10le"
                vout.options = {"profile": "4444"}
            aout, audio_note, transcode = None, None, False
            if ain is not None:
                name = ain.codec_context.name
                if name in _AUDIO_COPY.get(output.suffix.lower(), set()):
                    aout = sink.add_stream_from_template(ain)
                    audio_note = f"copied ({name})"
                else:
                    aout = sink.add_stream("aac", rate=ain.codec_context.sample_rate or 48000)
                    if ain.codec_context.layout is not None:
                        aout.layout = ain.codec_context.layout
                    audio_note, transcode = f"re-encoded {name} -> aac", True

            frames_done = 0
            pending: list = []
            total = vin.frames or None
            bar = tqdm(total=total, desc=source.name, unit="frame", disable=not progress, leave=False)

            def flush() -> None:
                nonlocal frames_done
                if not pending:
                    return
                images = [frame.to_image() for frame in pending]
                predictions = predict(model, images, batch_size=len(images), normalize=normalize, fast=fast,
                                      compile=compile, sides=False)
                for frame, image, prediction in zip(pending, images, predictions):
                    alpha = np.asarray(to_mask(prediction.probability, threshold))
                    if format == "mask":
                        out = av.VideoFrame.from_ndarray(alpha, format="gray")
                    else:
                        rgba = np.dstack([np.asarray(image), alpha])
                        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgba), format="rgba")
                    if out.width != width or out.height != height:
                        out = out.reformat(width=width, height=height)
                    out.pts = frame.pts if frame.pts is not None else frames_done
                    out.time_base = time_base
                    for packet in vout.encode(out):
                        sink.mux(packet)
                    frames_done += 1
                bar.update(len(pending))
                pending.clear()

            streams = [vin] + ([ain] if ain is not None else [])
            try:
                for packet in container.demux(*streams):
                    if packet.stream is vin:
                        for frame in packet.decode():
                            pending.append(frame)
                            if len(pending) >= batch_size:
                                flush()
                    elif transcode:
                        for frame in packet.decode():
                            for encoded in aout.encode(frame):
                                sink.mux(encoded)
                    elif packet.dts is not None:
                        packet.stream = aout
                        sink.mux(packet)
            except av.error.FFmpegError as error:
                raise VideoError(source, f"cannot decode the video after {frames_done + len(pending)} frames "
                                         f"({_why(error)})") from None
            flush()
            bar.close()
            if frames_done == 0:
                raise VideoError(source, "no frame could be decoded")
            for packet in vout.encode():
                sink.mux(packet)
            if transcode:
                for packet in aout.encode():
                    sink.mux(packet)
        finally:
            sink.close()
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        container.close()
    return VideoResult(path=output, frames=frames_done, width=width, height=height, rate=rate, audio=audio_note)
