r"""VoiceFilter conditioned on an enrolled reference (the paper's baseline): the
speaker model's embedding of another, clean utterance of each target speaker.

  python -m mirnet_jax.main --config=configs/vf_enrolled.py:demo --workdir=runs/demo/vf_enrolled

Sizes after the colon: paper (default), demo, tiny; see configs/separation.py.
"""

from configs import separation


def get_config(size: str = "paper"):
  return separation.separator("vf_enrolled", size)
