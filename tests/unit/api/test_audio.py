"""Decoding uploads (`speechfm_api.audio`): the model's own format natively, the rest by ffmpeg."""

from __future__ import annotations

import numpy as np
import pytest


def test_uploads_in_the_models_format_are_read_without_ffmpeg_and_give_its_samples(tmp_path):
    import soundfile as sf

    from speechfm_api import audio as audio_io
    from speechfm_api.errors import ApiError, LimitExceeded

    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal(16000 * 2) * 3000).astype(np.int16)
    for name in ("a.wav", "a.flac"):
        sf.write(tmp_path / name, pcm, 16000, subtype="PCM_16")
        native = audio_io.read_native(tmp_path / name, 30.0)
        assert native is not None and np.array_equal(native, pcm)
        assert np.array_equal(audio_io.decode_with_ffmpeg(tmp_path / name, 30.0), pcm)
        assert np.array_equal(audio_io.decode(tmp_path / name, 30.0), pcm / np.float32(32768.0))
        with pytest.raises(LimitExceeded):  # the limit holds on this path too
            audio_io.decode(tmp_path / name, 1.5)
    # anything else is left to ffmpeg: another rate, stereo, float samples, a broken file
    sf.write(tmp_path / "rate.wav", pcm, 44100, subtype="PCM_16")
    sf.write(tmp_path / "stereo.wav", np.stack([pcm, pcm], 1), 16000, subtype="PCM_16")
    sf.write(tmp_path / "float.wav", pcm / 32768.0, 16000, subtype="FLOAT")
    (tmp_path / "cut.flac").write_bytes((tmp_path / "a.flac").read_bytes()[:60])
    for name in ("rate.wav", "stereo.wav", "float.wav", "cut.flac"):
        assert audio_io.read_native(tmp_path / name, 30.0) is None, name
    assert abs(audio_io.decode(tmp_path / "rate.wav", 30.0).size - pcm.size * 16000 / 44100) < 50
    with pytest.raises(ApiError) as err:
        audio_io.decode(tmp_path / "cut.flac", 30.0)
    assert err.value.status == 422
