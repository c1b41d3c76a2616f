"""A transcribed upload in the shapes the service answers with: its chunks, words and segments
with times in seconds, as the service's own JSON, OpenAI's json / verbose_json / text, SRT and
WebVTT.

Times come from the CTC frames (`speechfm.core.ctc`: 20 ms each) offset by the chunk's start in
the upload. A segment (a subtitle cue) is a run of a chunk's words without a pause of
`SEGMENT_PAUSE_S` or more, at most `SEGMENT_MAX_S` long: it starts at its first word's first
letter and ends after its last word's last letter. Chunks of long audio are the music-rejecting
VAD's speech regions (`speechfm_api.audio.split_speech`), so a segment never spans music or a long silence.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.ctc import Word, group_words
from speechfm_api.registry import Decoded, LoadedModel

SEGMENT_PAUSE_S = 0.5
SEGMENT_MAX_S = 10.0


@dataclass(frozen=True)
class Segment:
    """A cue: words of one chunk, their text, times in seconds and the frames they cover."""

    start: float
    end: float
    text: str
    words: list[dict[str, Any]]
    avg_logprob: float


@dataclass(frozen=True)
class Transcription:
    """An upload's chunks (VAD spans, seconds) and what the model decoded for each."""

    model: LoadedModel
    seconds: float
    spans: list[tuple[float, float]]
    decoded: list[Decoded]

    @property
    def text(self) -> str:
        return " ".join(d.text for d in self.decoded if d.text)

    def words_of(self, i: int, words: list[Word] | None = None) -> list[dict[str, Any]]:
        """Words of chunk `i` (or the given ones of it) with times in the upload, in seconds."""
        offset, step = self.spans[i][0], self.model.frame_seconds
        return [{"word": w.text, "start": round(offset + w.start * step, 3),
                 "end": round(offset + w.end * step, 3)}
                for w in (self.decoded[i].words if words is None else words)]

    def words(self) -> list[dict[str, Any]]:
        return [w for i in range(len(self.spans)) for w in self.words_of(i)]

    def segments(self) -> list[Segment]:
        step = self.model.frame_seconds
        pause, longest = round(SEGMENT_PAUSE_S / step), round(SEGMENT_MAX_S / step)
        out = []
        for i, decoded in enumerate(self.decoded):
            for group in group_words(decoded.words, pause, longest):
                words = self.words_of(i, group)
                frames = decoded.frame_logprob[group[0].start: group[-1].end]
                out.append(Segment(words[0]["start"], words[-1]["end"],
                                   " ".join(w["word"] for w in words), words,
                                   round(float(frames.mean()), 4)))
        return out

    def body(self) -> dict[str, Any]:
        """The service's own answer (`POST /v1/models/{name}/transcribe`)."""
        chunks = [{"start": s, "end": e, "text": d.text, "words": self.words_of(i)}
                  for i, ((s, e), d) in enumerate(zip(self.spans, self.decoded))]
        segments = [{"start": s.start, "end": s.end, "text": s.text} for s in self.segments()]
        return {"model": self.model.name, "seconds": self.seconds, "text": self.text,
                "chunks": chunks, "segments": segments}

    def verbose(self, granularities: set[str], language: str) -> dict[str, Any]:
        """OpenAI's `verbose_json`: segments and/or words as `timestamp_granularities[]` asks."""
        body: dict[str, Any] = {"task": "transcribe", "language": language,
                                "duration": self.seconds, "text": self.text}
        if "segment" in granularities:
            tokenizer = self.model.processor.tokenizer
            body["segments"] = [
                {"id": k, "seek": int(s.start * 100), "start": s.start, "end": s.end,
                 "text": s.text, "tokens": tokenizer(s.text).input_ids,
                 "temperature": 0.0, "avg_logprob": s.avg_logprob,
                 "compression_ratio": compression_ratio(s.text), "no_speech_prob": 0.0}
                for k, s in enumerate(self.segments())]
        if "word" in granularities:
            body["words"] = self.words()
        return body

    def srt(self) -> str:
        return "".join(f"{k}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text}\n\n"
                       for k, s in enumerate(self.segments(), 1))

    def vtt(self) -> str:
        return "WEBVTT\n\n" + "".join(f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text}\n\n"
                                      for s in self.segments())


def transcription(model: LoadedModel, samples: int, spans: list[tuple[float, float]],
                  decoded: list[Decoded]) -> Transcription:
    return Transcription(model, round(samples / SAMPLE_RATE, 3), spans, decoded)


def clock(seconds: float, separator: str) -> str:
    """`HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT)."""
    ms = round(seconds * 1000)
    return (f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}"
            f"{separator}{ms % 1000:03d}")


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: bytes of the text over bytes of its zlib compression."""
    raw = text.encode("utf-8")
    return round(len(raw) / len(zlib.compress(raw)), 3) if raw else 0.0
