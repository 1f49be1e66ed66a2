"""`u2net predict clip.mp4 -o out`: real video files written and read back through PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from u2net_hub import U2Net, predict
from u2net_hub.cli import main
from u2net_hub.video import is_video_file

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

FPS, SECONDS, WIDTH, HEIGHT = 10, 3, 64, 48
FRAMES = FPS * SECONDS
SAMPLE_RATE = 44100


def _scene(i: int, frames: int, width: int, height: int) -> np.ndarray:
    """A yellow disc crossing a dark noisy background."""
    rng = np.random.default_rng(i)
    array = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    cx = int(width * (0.25 + 0.5 * i / frames))
    array[(xx - cx) ** 2 + (yy - height // 2) ** 2 < (height // 4) ** 2] = (240, 200, 30)
    return array


def _write_video(path: Path, codec: str, frames: int, width: int, height: int, pix_fmt: str = "yuv420p",
                 audio: str | None = None, sample_rate: int = SAMPLE_RATE) -> Path:
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=FPS)
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    sound = None
    if audio:
        sound = out.add_stream(audio, rate=sample_rate)
        sound.layout = "stereo"
    for i in range(frames):
        for packet in video.encode(av.VideoFrame.from_ndarray(_scene(i, frames, width, height), format="rgb24")):
            out.mux(packet)
    if sound is not None:
        step = 960
        for start in range(0, int(sample_rate * frames / FPS), step):
            tone = np.sin(2 * np.pi * 440 * (np.arange(step) + start) / sample_rate).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sample_rate, start
            for packet in sound.encode(frame):
                out.mux(packet)
    for stream in [video] + ([sound] if sound else []):
        for packet in stream.encode():
            out.mux(packet)
    out.close()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 3-second 10 fps 64x48 H.264 MP4 with an AAC stereo track."""
    return _write_video(tmp_path_factory.mktemp("video") / "clip.mp4", "libx264", FRAMES, WIDTH, HEIGHT, audio="aac")


def _decode(path: Path, format: str) -> tuple[list[np.ndarray], av.video.stream.VideoStream, list]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format=format) for frame in container.decode(stream)]
        info = {"rate": stream.average_rate, "size": (stream.width, stream.height), "codec": stream.codec_context.name,
                "pix_fmt": stream.codec_context.pix_fmt}
        audio = [(a.codec_context.name, float(a.duration * a.time_base)) for a in container.streams.audio]
    return frames, info, audio


def _expected_masks(clip: Path, tiny32_folder: Path, batch_size: int, normalize: bool = False) -> list[np.ndarray]:
    """The masks predict() gives for the decoded frames, in the same batches."""
    model = U2Net.from_pretrained(str(tiny32_folder))
    with av.open(str(clip)) as container:
        images = [frame.to_image() for frame in container.decode(video=0)]
    masks = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        masks += [np.asarray(p.mask, dtype=np.int16) for p in predict(model, chunk, batch_size=len(chunk), sides=False,
                                                                     normalize=normalize)]
    return masks


def test_mask_video_has_the_frames_size_rate_and_audio_of_the_input(clip, tiny32_folder, tmp_path):
    assert main(["predict", str(clip), "-o", str(tmp_path), "--model", str(tiny32_folder), "--batch-size", "4"]) == 0
    frames, info, audio = _decode(tmp_path / "clip.mp4", "gray")
    assert len(frames) == FRAMES and info["size"] == (WIDTH, HEIGHT) and info["rate"] == FPS
    assert info["codec"] == "h264"
    assert audio and audio[0][0] == "aac" and audio[0][1] == pytest.approx(SECONDS, abs=0.1)
    expected = _expected_masks(clip, tiny32_folder, 4)
    for got, want in zip(frames, expected):  # H.264 at crf 12 is near-lossless on a grey mask
        assert np.abs(got.astype(np.int16) - want).mean() < 2.0


def test_rgba_video_keeps_a_real_alpha_channel(clip, tiny32_folder, tmp_path):
    assert main(["predict", str(clip), "-o", str(tmp_path), "--model", str(tiny32_folder), "--format", "rgba",
                 "--batch-size", "8", "--normalize"]) == 0  # min-max: the random model's alpha spans 0..255
    frames, info, audio = _decode(tmp_path / "clip.mov", "rgba")
    assert info["codec"] == "prores" and info["pix_fmt"].startswith("yuva444")
    assert len(frames) == FRAMES and info["size"] == (WIDTH, HEIGHT) and info["rate"] == FPS
    assert audio and audio[0][0] == "aac" and audio[0][1] == pytest.approx(SECONDS, abs=0.1)
    expected = _expected_masks(clip, tiny32_folder, 8, normalize=True)
    with av.open(str(clip)) as container:
        originals = [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)]
    for got, want, original in zip(frames, expected, originals):
        alpha = got[..., 3].astype(np.int16)
        assert np.abs(alpha - want).max() <= 2  # the alpha plane is the mask, not a constant 255
        assert np.abs(got[..., :3].astype(np.int16) - original).mean() < 3  # and the colours are the frame's
    assert frames[0][..., 3].min() < 10 and frames[0][..., 3].max() > 245


@pytest.mark.parametrize("name,codec,pix_fmt", [
    ("clip.webm", "libvpx-vp9", "yuv420p"),
    ("clip.mkv", "libx264", "yuv420p"),
    ("clip.avi", "mpeg4", "yuv420p"),
    ("clip.gif", "gif", "rgb8"),
    ("odd.mov", "prores_ks", "yuv422p10le"),
])
def test_other_containers_give_one_output_per_input_with_the_same_frames(name, codec, pix_fmt, tiny32_folder, tmp_path):
    width, height = (33, 25) if name.startswith("odd") else (32, 24)
    source = _write_video(tmp_path / name, codec, 6, width, height, pix_fmt=pix_fmt)
    assert is_video_file(source)
    assert main(["predict", str(source), "-o", str(tmp_path / "out"), "--model", str(tiny32_folder)]) == 0
    frames, info, _ = _decode(tmp_path / "out" / (Path(name).stem + ".mp4"), "gray")
    assert len(frames) == 6 and info["size"] == (width, height)


def test_audio_the_output_container_cannot_hold_is_re_encoded(tiny32_folder, tmp_path):
    source = _write_video(tmp_path / "talk.webm", "libvpx-vp9", 20, 32, 24, audio="libopus", sample_rate=48000)
    assert main(["predict", str(source), "-o", str(tmp_path / "out"), "--model", str(tiny32_folder),
                 "--format", "rgba"]) == 0
    frames, info, audio = _decode(tmp_path / "out" / "talk.mov", "rgba")  # Opus does not go into .mov: AAC
    assert len(frames) == 20 and info["rate"] == FPS
    assert audio and audio[0][0] == "aac" and audio[0][1] == pytest.approx(2.0, abs=0.1)


def test_a_broken_video_is_reported_and_the_others_are_written(clip, tiny32_folder, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    still = tmp_path / "still.gif"
    Image.fromarray(_scene(0, 1, 32, 24)).save(still)  # one frame: an image, not a video
    assert not is_video_file(still)
    code = main(["predict", str(broken), str(clip), str(still), "-o", str(tmp_path / "out"), "--model",
                 str(tiny32_folder)])
    err = capsys.readouterr().err
    assert code == 1
    assert "skipped" in err and "broken.mp4" in err and "Traceback" not in err
    assert (tmp_path / "out" / "clip.mp4").is_file() and (tmp_path / "out" / "still.png").is_file()
    assert not (tmp_path / "out" / "broken.mp4").exists()
    assert not list((tmp_path / "out").glob(".*.part.*"))  # no half-written temporary file left behind


def test_frames_go_through_the_model_in_batches_as_they_are_decoded(clip, tiny32_folder, tmp_path, monkeypatch):
    """Streamed: predict() sees at most --batch-size frames at a time, so memory does not grow with the video."""
    from u2net_hub import video

    calls: list[int] = []
    real = video.predict

    def counting(model, images, **kwargs):
        calls.append(len(images))
        return real(model, images, **kwargs)

    monkeypatch.setattr(video, "predict", counting)
    model = U2Net.from_pretrained(str(tiny32_folder))
    result = video.predict_video(model, clip, tmp_path / "m.mp4", batch_size=4, progress=False)
    assert result.frames == FRAMES and result.rate == Fraction(FPS) and result.audio == "copied (aac)"
    assert calls == [4] * 7 + [2]
