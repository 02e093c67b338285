r"""uPIT: the same CNN + BLSTM without conditioning, twice the fully connected width,
one mask per speaker, utterance-level permutation-invariant training.

  python -m mirnet_jax.main --config=configs/upit.py:demo --workdir=runs/demo/upit

Sizes after the colon: paper (default), demo, tiny; see configs/separation.py.
"""

from configs import separation


def get_config(size: str = "paper"):
  return separation.separator("upit", size)
