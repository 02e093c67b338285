"""The features every model reads: the log-magnitude of the stored STFT, normalised per
utterance and frequency bin (CMVN, the usual front end of speaker models)."""

import jax.numpy as jnp

from mirnet_jax import features


def cmvn(x):
  """`[B, T, F]` -> mean- and variance-normalised over time, per utterance and bin."""
  mean = jnp.mean(x, axis=1, keepdims=True)
  std = jnp.std(x, axis=1, keepdims=True)
  return (x - mean) / (std + 1e-3)


def log_spectrum(stored, normalise: bool = True):
  """`[B, T, 257, 2]` stored STFT (or an already computed `[B, T, 257]` log-spectrum) ->
  float32 `[B, T, 257]` log-magnitude, CMVN-normalised if `normalise`."""
  x = features.log_magnitude(stored, xp=jnp) if stored.ndim == 4 else stored
  x = x.astype(jnp.float32)
  return cmvn(x) if normalise else x
