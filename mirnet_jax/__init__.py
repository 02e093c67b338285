"""mirnet_jax: MIRNet (Han, Chung, Kang, Interspeech 2020) in JAX/Flax."""
