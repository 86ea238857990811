"""ffprobe parsing, the ffmpeg runner (progress, cancel, stall, failure), loudnorm and waveform helpers."""

from __future__ import annotations

import json
import math
import time
from array import array
from pathlib import Path
from typing import Any

import pytest

from app.media import ffmpeg, waveform
from app.media.ffmpeg import Loudness, Progress
from tests.media.conftest import Clips

LAVFI_LONG = ["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "600", "-f", "null", "-"]


def base(*extra: str, loglevel: str = "error") -> list[str]:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", loglevel, "-progress", "pipe:1", "-nostats"]
    return [*cmd, *extra]


# ---- probe ----------------------------------------------------------------------------------


def test_probe_reads_a_real_clip(clips: Clips) -> None:
    result = ffmpeg.probe(clips.video())
    assert result.video is not None and result.audio is not None
    assert (result.video.width, result.video.height, result.video.fps) == (640, 360, 25.0)
    assert result.video.display_size == (640, 360)
    assert result.duration == pytest.approx(3.5, abs=0.1)


def test_probe_sees_the_display_rotation(clips: Clips) -> None:
    result = ffmpeg.probe(clips.rotated())
    assert result.video is not None
    assert abs(result.video.rotation) == 90
    assert result.video.display_size == (720, 1280)


def test_probe_fails_on_bytes_that_only_look_like_mp4(clips: Clips) -> None:
    with pytest.raises(ffmpeg.ProbeError) as info:
        ffmpeg.probe(clips.garbage())
    assert info.value.returncode != 0


def test_probe_fails_cleanly_when_ffprobe_is_missing(clips: Clips) -> None:
    with pytest.raises(ffmpeg.FFmpegUnavailable, match="could not run"):
        ffmpeg.probe(clips.garbage(), "/nonexistent/ffprobe")


def stream(**fields: Any) -> dict[str, Any]:
    return {"index": 0, "codec_name": "h264", "codec_type": "video", "width": 1920, "height": 1080, **fields}


def test_parse_probe_ignores_cover_art_and_prefers_default_streams() -> None:
    data = {
        "format": {"format_name": "mp3", "duration": "12.5"},
        "streams": [
            {"index": 0, "codec_name": "mp3", "codec_type": "audio", "channels": 2, "sample_rate": "44100"},
            stream(index=1, codec_name="mjpeg", disposition={"attached_pic": 1}),
        ],
    }
    result = ffmpeg.parse_probe(data)
    assert result.video is None
    assert result.audio is not None and result.audio.index == 0 and result.audio.sample_rate == 44100
    assert result.duration == 12.5

    two = ffmpeg.parse_probe(
        {"format": {}, "streams": [stream(index=0), stream(index=1, disposition={"default": 1}, duration="8.0")]}
    )
    assert two.video is not None and two.video.index == 1
    assert two.duration == 8.0  # from the streams when the format has none


def test_parse_probe_rotation_sources_and_bad_values() -> None:
    side = ffmpeg.parse_probe({"streams": [stream(side_data_list=[{"rotation": -90}])]})
    assert side.video is not None and side.video.display_size == (1080, 1920)
    tag = ffmpeg.parse_probe({"streams": [stream(tags={"rotate": "270"})]})
    assert tag.video is not None and tag.video.display_size == (1080, 1920)
    assert ffmpeg.parse_probe({"streams": [stream(width=0)]}).video is None
    assert ffmpeg.parse_probe({"streams": [stream(codec_name=None)]}).has_stream is False
    assert ffmpeg.parse_probe({"format": {"duration": "N/A"}, "streams": []}).duration is None
    fps = ffmpeg.parse_probe({"streams": [stream(avg_frame_rate="0/0", r_frame_rate="30000/1001")]})
    assert fps.video is not None and fps.video.fps == pytest.approx(29.97, abs=0.01)


# ---- run ------------------------------------------------------------------------------------


def test_run_reports_progress_until_the_end(tmp_path: Path) -> None:
    seen: list[Progress] = []
    out = tmp_path / "out.mp4"
    cmd = base("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "2", "-c:v", "libx264", str(out))
    ffmpeg.run(cmd, on_progress=lambda p: seen.append(p) is None)
    assert seen and seen[-1].done
    assert seen[-1].out_time == pytest.approx(2.0, abs=0.3)
    assert out.stat().st_size > 0


def test_run_stops_ffmpeg_when_the_callback_says_so() -> None:
    started = time.monotonic()
    with pytest.raises(ffmpeg.FFmpegCancelled):
        ffmpeg.run(base(*LAVFI_LONG), on_progress=lambda p: False)
    assert time.monotonic() - started < 5


def test_run_kills_a_stalled_ffmpeg() -> None:
    # -stats_period 30: no progress block for 30 s, so a 1 s stall timeout must fire.
    started = time.monotonic()
    with pytest.raises(ffmpeg.FFmpegStalled):
        ffmpeg.run(base("-stats_period", "30", *LAVFI_LONG), stall_timeout=1.0)
    assert time.monotonic() - started < 5


def test_run_raises_with_the_stderr_tail_on_failure(tmp_path: Path) -> None:
    with pytest.raises(ffmpeg.FFmpegError) as info:
        ffmpeg.run(base("-i", str(tmp_path / "missing.mp4"), "-f", "null", "-"))
    assert info.value.returncode != 0
    assert "missing.mp4" in info.value.stderr
    with pytest.raises(ffmpeg.FFmpegUnavailable, match="could not run"):
        ffmpeg.run(["/nonexistent/ffmpeg", "-version"])


def test_video_encode_args_are_one_run_for_the_whole_ladder(tmp_path: Path) -> None:
    from app.media import ladder

    video = ffmpeg.VideoStream(index=0, codec="h264", width=1280, height=720, fps=30.0)
    audio = ffmpeg.AudioStream(index=1, codec="aac")
    args = ffmpeg.video_encode_args(
        "ffmpeg",
        tmp_path / "in.mp4",
        tmp_path,
        video,
        audio,
        ladder.video_ladder(1280, 720),
        preset="veryfast",
        demuxer="mov",
    )
    assert args.count("-filter_complex") == 1 and args.count("-i") == 1
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:0]null,split=3[s0][s1][s2]")
    assert "[s1]scale=852:480" in graph
    assert args.count("libx264") == 3 and args.count("0:1") == 3
    assert args[args.index("-g") + 1] == "60" and args[args.index("-maxrate") + 1] == "2996k"
    assert args[args.index("-hls_time") + 1] == "6"
    assert str(tmp_path / "720p" / "seg_%05d.ts") in args
    silent = ffmpeg.video_encode_args(
        "ffmpeg",
        tmp_path / "in.mp4",
        tmp_path,
        video,
        None,
        ladder.video_ladder(640, 360),
        preset="veryfast",
        demuxer="mov",
    )
    assert "-c:a" not in silent and "0:1" not in silent


# ---- loudnorm -------------------------------------------------------------------------------

LOUDNORM_STDERR = """
[out#0/null] something
[Parsed_loudnorm_0 @ 0x55d5]
{
	"input_i" : "-27.61",
	"input_tp" : "-8.02",
	"input_lra" : "0.00",
	"input_thresh" : "-37.61",
	"output_i" : "-16.03",
	"output_tp" : "-1.50",
	"output_lra" : "0.00",
	"output_thresh" : "-26.03",
	"normalization_type" : "linear",
	"target_offset" : "0.03"
}
"""


def test_parse_loudnorm_and_the_pass_two_filter() -> None:
    measured = ffmpeg.parse_loudnorm(LOUDNORM_STDERR)
    assert measured == Loudness(-27.61, -8.02, 0.0, -37.61, 0.03)
    assert ffmpeg.loudnorm_apply_filter(measured) == (
        "loudnorm=I=-16:TP=-1.5:LRA=11:measured_I=-27.61:measured_TP=-8.02:measured_LRA=0.00"
        ":measured_thresh=-37.61:offset=0.03:linear=true"
    )
    silent = Loudness(-math.inf, -math.inf, 0.0, -math.inf, math.inf)
    assert ffmpeg.loudnorm_apply_filter(silent) == "loudnorm=I=-16:TP=-1.5:LRA=11"  # dynamic mode
    with pytest.raises(ffmpeg.FFmpegError):
        ffmpeg.parse_loudnorm("no report here")
    with pytest.raises(ffmpeg.FFmpegError):
        ffmpeg.parse_loudnorm('[Parsed_loudnorm_0 @ 0x1] {"input_i": "x"}')


def test_loudnorm_measures_a_real_tone(clips: Clips) -> None:
    probed = ffmpeg.probe(clips.tone())
    assert probed.audio is not None
    stderr = ffmpeg.run(ffmpeg.loudnorm_measure_args("ffmpeg", clips.tone(), probed.audio, demuxer=probed.demuxer))
    measured = ffmpeg.parse_loudnorm(stderr)
    assert measured.usable and -40 < measured.input_i < 0


# ---- waveform -------------------------------------------------------------------------------


def write_pcm(path: Path, samples: list[int]) -> Path:
    data = array("h", samples)
    path.write_bytes(data.tobytes())
    return path


def test_waveform_peaks_per_100_ms(tmp_path: Path) -> None:
    samples = [0] * 800 + [100, -16384] + [0] * 798 + [-32768] + [0] * 799 + [32767] * 10
    pcm = write_pcm(tmp_path / "a.pcm", samples)
    assert waveform.peaks_from_pcm(pcm, 0.301) == [0.0, 0.5, 1.0, 1.0]


def test_waveform_length_follows_the_probed_duration(tmp_path: Path) -> None:
    pcm = write_pcm(tmp_path / "b.pcm", [16384] * 8000)  # 1 s decoded
    assert len(waveform.peaks_from_pcm(pcm, 1.0)) == 10
    padded = waveform.peaks_from_pcm(pcm, 1.25)  # a short decode is padded with silence
    assert len(padded) == 13 and padded[-3:] == [0.0, 0.0, 0.0] and padded[0] == 0.5
    assert len(waveform.peaks_from_pcm(pcm, 0.5)) == 5  # extra samples dropped

    doc = waveform.write_waveform(pcm, 3.6, tmp_path / "w.json")
    stored = json.loads((tmp_path / "w.json").read_text())
    assert stored == doc
    assert set(doc) == {"version", "points_per_second", "duration_seconds", "peaks"}
    assert (doc["version"], doc["points_per_second"], doc["duration_seconds"], len(doc["peaks"])) == (1, 10, 4, 36)
