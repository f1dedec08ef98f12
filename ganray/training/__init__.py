"""GAN training: the plain PyTorch loop and the Ray Train wrapper around it."""
