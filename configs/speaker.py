r"""The single-speaker embedding model of the enrolled VoiceFilter baseline: MIRNet's
ResNet-18 + TAP trunk trained with cross-entropy on clean single-speaker segments.

  python -m mirnet_jax.main --config=configs/speaker.py:demo --workdir=runs/demo/speaker

Sizes after the colon: paper (default), demo, tiny; see configs/separation.py.
"""

from configs import separation


def get_config(size: str = "paper"):
  return separation.speaker_model(size)
