r"""VoiceFilter conditioned on MIRNet: the mask network runs once per MIRNet output
slot, conditioned on that slot's embedding of the mixture itself (no enrolment).

  python -m mirnet_jax.main --config=configs/vf_mirnet.py:demo --workdir=runs/demo/vf_mirnet

Sizes after the colon: paper (default), demo, tiny; see configs/separation.py.
"""

from configs import separation


def get_config(size: str = "paper"):
  return separation.separator("vf_mirnet", size)
