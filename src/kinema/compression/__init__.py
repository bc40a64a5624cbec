"""Video compression: Kinema's causal 3D VAE (video <-> latents, compressing space and time)."""

from kinema.compression.vae import PRESETS, CausalVAE, VAEConfig, VAEOutput, sample_posterior

__all__ = ["PRESETS", "CausalVAE", "VAEConfig", "VAEOutput", "sample_posterior"]
