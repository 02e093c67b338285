"""The features every model reads: the log-magnitude of the stored STFT, normalised per
utterance and frequency bin (CMVN, the usual front end of speaker models)."""

import jax.numpy as jnp

from mirnet_jax import features


def cmvn(x):
  """`[B, T, F]` -> mean- and variance-normalised over time, per utterance and bin."""
  mean = jnp.mean(x, axis=1, keepdims=True)
  std = jnp.std(x, axis=1, keepdims=True)
  return (x - mean) / (std + 1e-3)


def log_spectrum(stored, normalise: bool = True, time_keep=None, freq_keep=None):
  """`[B, T, 257, 2]` stored STFT (or an already computed `[B, T, 257]` log-spectrum) ->
  float32 `[B, T, 257]` log-magnitude, CMVN-normalised if `normalise`.

  `time_keep [B, T]` / `freq_keep [B, 257]` (bool; training's SpecAugment masks, see
  pipeline.Augmentation) zero the frames and bins they do not keep after normalisation:
  the utterance's mean, as SpecAugment fills its masks.
  """
  x = features.log_magnitude(stored, xp=jnp) if stored.ndim == 4 else stored
  x = x.astype(jnp.float32)
  x = cmvn(x) if normalise else x
  if time_keep is not None:
    x = jnp.where(time_keep[:, :, None], x, 0.0)
  if freq_keep is not None:
    x = jnp.where(freq_keep[:, None, :], x, 0.0)
  return x
