"""The STFT matches the paper's parameters, storage is faithful, mixing is exact."""

import jax.numpy as jnp
import librosa
import numpy as np
import scipy.signal

from mirnet_jax import features


def test_paper_parameters():
  assert features.NUM_BINS == 257
  assert features.WIN_LENGTH / features.SAMPLE_RATE == 0.032
  assert features.HOP_LENGTH / features.SAMPLE_RATE == 0.010


def test_stft_matches_librosa_and_a_direct_fft():
  wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
  spec = features.stft(wave)
  assert spec.shape == (features.num_frames(16000), 257) == (101, 257)
  reference = librosa.stft(wave, n_fft=512, hop_length=160, win_length=512, window="hann",
                           center=True, pad_mode="constant").T
  np.testing.assert_allclose(spec, reference, atol=1e-4)
  # Independently of librosa: frame t is the FFT of the periodic-Hann-windowed samples
  # centred on t*160.
  padded = np.pad(wave, 256)
  window = scipy.signal.get_window("hann", 512, fftbins=True)
  for t in (0, 37, 100):
    direct = np.fft.rfft(padded[t * 160:t * 160 + 512] * window)
    np.testing.assert_allclose(spec[t], direct, atol=1e-3)


def test_sine_lands_in_its_bin():
  t = np.arange(16000) / 16000
  spec = features.stft(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
  assert np.argmax(np.abs(spec[50])) == 1000 / (16000 / 512)  # bin 32


def test_storage_round_trip_is_within_float16_precision():
  spec = features.stft(np.random.default_rng(1).uniform(-1, 1, 8000).astype(np.float32))
  stored = features.to_storage(spec)
  assert stored.dtype == np.float16 and stored.shape == spec.shape + (2,)
  back = features.from_storage(stored)
  assert np.max(np.abs(back - spec) / (np.abs(spec) + 1e-3)) < 2 ** -10


def test_mixing_stored_spectra_equals_spectrum_of_mixed_waveforms():
  rng = np.random.default_rng(2)
  a = rng.standard_normal(48000).astype(np.float32) * 0.05
  b = np.sin(np.arange(48000) * 0.05).astype(np.float32) * 0.2
  gain = 10 ** (-3.7 / 20)
  from_shards = (features.from_storage(features.to_storage(features.stft(a)))
                 + gain * features.from_storage(features.to_storage(features.stft(b))))
  exact = features.stft(a + gain * b)
  # Tolerance: two float16 roundings, 2**-11 relative each, of the source magnitudes.
  bound = 2 * 2 ** -11 * (np.abs(features.stft(a)) + gain * np.abs(features.stft(b))) + 1e-6
  assert np.all(np.abs(from_shards - exact) <= bound)


def test_log_magnitude_numpy_and_jax_agree():
  stored = features.to_storage(features.stft(
      np.random.default_rng(3).standard_normal(4000).astype(np.float32)))
  ref = np.log(np.abs(features.from_storage(stored)) + 1e-12)
  np_out = features.log_magnitude(stored)
  jax_out = np.asarray(features.log_magnitude(jnp.asarray(stored), xp=jnp))
  np.testing.assert_allclose(np_out, jax_out, rtol=1e-5, atol=1e-5)
  loud = np.abs(features.from_storage(stored)) > 1e-2
  np.testing.assert_allclose(np_out[loud], ref[loud], atol=1e-4)
  assert np.all(np.isfinite(features.log_magnitude(np.zeros((3, 257, 2), np.float16))))
