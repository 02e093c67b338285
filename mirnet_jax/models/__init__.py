"""Flax linen models: MIRNet and its ResNet speaker trunk."""
